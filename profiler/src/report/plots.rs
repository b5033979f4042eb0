//! The report's plots, each an SVG string drawn by plotters' SVG backend.
use plotters::{
    coord::{Shift, ranged1d::SegmentValue},
    prelude::*,
};

type Drawn = Result<String, String>;

/// A bar: its name, value and 95% interval (None: too few samples).
pub type Bar = (String, f64, Option<(f64, f64)>);
/// A named series drawn as several runs (a mode's passes).
pub type Runs = (String, Vec<Vec<(f64, f64)>>);

const SIZE: (u32, u32) = (960, 420);

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

/// Draws on a fresh SVG canvas of the usual size.
fn canvas(draw: impl for<'b> FnOnce(&DrawingArea<SVGBackend<'b>, Shift>) -> Drawing) -> Drawn {
    canvas_sized(SIZE, draw)
}

/// What drawing returns: plotters' errors, made text by the canvas.
type Drawing = Result<(), Box<dyn std::error::Error>>;

/// Draws on a fresh SVG canvas.
fn canvas_sized(
    size: (u32, u32),
    draw: impl for<'b> FnOnce(&DrawingArea<SVGBackend<'b>, Shift>) -> Drawing,
) -> Drawn {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        draw(&root).map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// Named lines on a log-x axis (latency CDFs, block latency per device).
pub fn log_x_lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Drawn {
    let xs = series.iter().flat_map(|(_, p)| p.iter().map(|(x, _)| *x));
    let lo = xs.clone().fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = xs.fold(0.0, f64::max).max(lo * 10.0);
    let y_hi = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.05;
    canvas(|root| {
        let mut chart = builder(root, title, 60)
            .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), 0.0..y_hi)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let c = color(i);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

/// One bar per name with its 95% interval as a whisker (None: no interval).
pub fn bars_with_ci(title: &str, value_desc: &str, bars: &[Bar]) -> Drawn {
    let names: Vec<&str> = bars.iter().map(|b| b.0.as_str()).collect();
    let top = bars
        .iter()
        .map(|(_, v, ci)| ci.map_or(*v, |c| c.1.max(*v)))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.1;
    canvas_sized(bar_chart_size(names.len()), |root| {
        let mut chart = bar_axes(root, title, value_desc, &names, 0.0..top)?;
        for (i, (_, v, ci)) in bars.iter().enumerate() {
            chart.draw_series(std::iter::once(bar(
                i,
                0.0,
                *v,
                color(i).mix(0.75).filled(),
            )))?;
            if let Some((lo, hi)) = ci {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![
                        (*lo, SegmentValue::CenterOf(i)),
                        (*hi, SegmentValue::CenterOf(i)),
                    ],
                    BLACK.stroke_width(2),
                )))?;
            }
        }
        Ok(())
    })
}

/// Stacked bars: per name, its parts (one value per part name) left to right.
pub fn stacked_bars(
    title: &str,
    value_desc: &str,
    parts: &[&str],
    bars: &[(String, Vec<f64>)],
) -> Drawn {
    let names: Vec<&str> = bars.iter().map(|b| b.0.as_str()).collect();
    let top = bars
        .iter()
        .map(|(_, v)| v.iter().sum::<f64>())
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.3; // room for the legend
    canvas_sized(bar_chart_size(names.len()), |root| {
        let mut chart = bar_axes(root, title, value_desc, &names, 0.0..top)?;
        for (p, part) in parts.iter().enumerate() {
            let c = PART_COLOURS[p % PART_COLOURS.len()];
            chart
                .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                    let before: f64 = v[..p].iter().sum();
                    bar(i, before, before + v[p], c.filled())
                }))?
                .label(*part)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Lines over time, one colour per name; a name may have several runs
/// (passes) drawn apart.
pub fn time_lines(title: &str, y_desc: &str, series: &[Runs]) -> Drawn {
    let points = series.iter().flat_map(|(_, runs)| runs.iter().flatten());
    let t_hi = points.clone().map(|p| p.0).fold(0.0, f64::max).max(1e-3) * 1.02;
    let y_hi = points.map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    canvas(|root| {
        let mut chart = builder(root, title, 60).build_cartesian_2d(0.0..t_hi, 0.0..y_hi)?;
        chart
            .configure_mesh()
            .x_desc("seconds since the run began")
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, runs)) in series.iter().enumerate() {
            let c = color(i);
            for (r, run) in runs.iter().enumerate() {
                let drawn =
                    chart.draw_series(LineSeries::new(run.iter().copied(), c.stroke_width(2)))?;
                if r == 0 {
                    drawn.label(name.as_str()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                    });
                }
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)
    })
}

/// Change per name, percent: green better, red worse, grey not significant.
pub fn changes(title: &str, rows: &[(String, f64, bool, bool)]) -> Drawn {
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let span = rows.iter().map(|r| r.1.abs()).fold(1.0, f64::max) * 1.3;
    canvas_sized(bar_chart_size(names.len()), |root| {
        let mut chart = bar_axes(
            root,
            title,
            "change, % (~: not significant)",
            &names,
            -span..span,
        )?;
        for (i, (_, delta, significant, better)) in rows.iter().enumerate() {
            let c = match (significant, better) {
                (false, _) => RGBColor(150, 150, 150),
                (true, true) => RGBColor(40, 160, 60),
                (true, false) => RGBColor(200, 40, 40),
            };
            chart.draw_series(std::iter::once(bar(i, 0.0, *delta, c.filled())))?;
            let mark = if *significant {
                format!("{delta:+.1}%")
            } else {
                "~".into()
            };
            chart.draw_series(std::iter::once(Text::new(
                mark,
                (*delta, SegmentValue::CenterOf(i)),
                ("sans-serif", 14),
            )))?;
        }
        Ok(())
    })
}

type BarChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
    >,
>;

/// Horizontal bars: a row per name (its name on the left), values along x.
fn bar_axes<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    value_desc: &str,
    names: &[&str],
    values: std::ops::Range<f64>,
) -> Result<BarChart<'a, 'b>, Box<dyn std::error::Error>> {
    let mut chart = builder(root, title, 170).build_cartesian_2d(values, segments(names.len()))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(value_desc)
        .y_labels(names.len())
        .y_label_style(("sans-serif", 13))
        .y_label_formatter(&|v| segment_name(names, v))
        .draw()?;
    Ok(chart)
}

/// A chart with its caption and room for the axes' labels.
fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    y_label_area: u32,
) -> ChartBuilder<'a, 'static, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(y_label_area);
    b
}

/// The series' names and colours in a box.
fn legend<'a, 'b: 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, CT>,
    at: SeriesLabelPosition,
) -> Drawing {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(at)
        .draw()?;
    Ok(())
}

/// A bar chart's canvas: taller with more rows.
fn bar_chart_size(rows: usize) -> (u32, u32) {
    (SIZE.0, (110 + 30 * rows as u32).max(260))
}

/// Bar i from `lo` to `hi`, apart from its neighbours.
fn bar(i: usize, lo: f64, hi: f64, style: ShapeStyle) -> Rectangle<(f64, SegmentValue<usize>)> {
    let mut r = Rectangle::new(
        [
            (lo, SegmentValue::Exact(i)),
            (hi, SegmentValue::Exact(i + 1)),
        ],
        style,
    );
    r.set_margin(3, 3, 0, 0);
    r
}

/// One segment per bar (a range 0..n has n + 1 key points).
fn segments(
    n: usize,
) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize> {
    (0..n.max(1) - 1).into_segmented()
}

/// The stacked parts' colours: alloc, transfer, sync, free.
const PART_COLOURS: [RGBColor; 4] = [
    RGBColor(66, 133, 244),
    RGBColor(15, 157, 88),
    RGBColor(244, 180, 0),
    RGBColor(150, 150, 150),
];

fn segment_name(names: &[&str], v: &SegmentValue<usize>) -> String {
    match v {
        SegmentValue::CenterOf(i) => names.get(*i).map(|s| s.to_string()).unwrap_or_default(),
        _ => String::new(),
    }
}
