//! The dashboard: header, modes side by side, one detail panel (latency,
//! CPU or block layer) for the selected mode, bandwidth, key help.
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Row, Sparkline, Table},
};

use crate::{
    format::{bytes, duration_ns},
    model::{Buckets, ModeView, Panel, Snapshot},
};

/// Below this the dashboard cannot be read; it says so instead.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

pub fn render(frame: &mut Frame, s: &Snapshot) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let msg = format!(
            "terminal too small ({}x{}): dmaprof needs {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(msg).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let modes_h = (s.modes.len() as u16 + 3).clamp(4, (area.height / 3).max(4));
    let [header, modes, body, footer] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(modes_h),
        Constraint::Min(6),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(frame, header, s);
    render_modes(frame, modes, s);
    let wide = body.width >= 100;
    let [detail, side] = if wide {
        Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body)
    } else {
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(body)
    };
    match s.modes.get(s.selected) {
        Some(m) => {
            match s.panel {
                Panel::Latency => render_latency(frame, detail, m),
                Panel::Cpu => render_cpu(frame, detail, m),
                Panel::Block => render_block(frame, detail, s),
                Panel::Profile => render_profile(frame, detail, m),
            }
            render_bandwidth(frame, side, m);
        }
        None => frame.render_widget(
            Paragraph::new("waiting for the first call ...").block(Block::bordered()),
            body,
        ),
    }
    frame.render_widget(
        Paragraph::new(if s.header.finished {
            "run finished: q to exit · tab panel · ←/→ mode · ? help"
        } else {
            "q quit · p pause · r reset · tab panel · ←/→ mode · ? help"
        })
        .style(Style::new().fg(Color::DarkGray)),
        footer,
    );
    if s.show_help {
        render_help(frame, area);
    }
}

fn render_header(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let h = &s.header;
    let state = if h.finished {
        "finished".to_string()
    } else if let Some(m) = &h.running {
        format!("running {m}")
    } else {
        "starting".to_string()
    };
    // What changes comes first: a narrow terminal cuts the end of the line.
    let first = Line::from(vec![
        Span::styled("dmaprof", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  {state}{}  pass {}/{}  {:.1}s  kernel {}  {} {}  cache {}{}",
            if h.paused { "  [display paused]" } else { "" },
            h.passes_done,
            h.passes_planned,
            h.elapsed_s,
            h.kernel,
            h.direction,
            h.file,
            h.cache,
            if h.buffers.is_empty() {
                String::new()
            } else {
                format!("  buffers {}", h.buffers)
            },
        )),
    ]);
    let mut probes: Vec<Span> = vec![Span::raw("probes: ")];
    if h.probes.is_empty() {
        probes.push(Span::styled(
            "off (userspace timing only)",
            Style::new().fg(Color::Yellow),
        ));
    }
    for (i, p) in h.probes.iter().enumerate() {
        if i > 0 {
            probes.push(Span::raw(" · "));
        }
        let text = format!("{} {}", p.name, p.method.as_deref().unwrap_or("not traced"));
        let style = if p.method.is_none() || p.degraded {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        probes.push(Span::styled(text, style));
    }
    if let Some(pct) = h.probe_cost_pct {
        probes.push(Span::raw(format!("  probes cost {pct:.2}% of call time")));
    }
    if h.lost_events > 0 {
        probes.push(Span::styled(
            format!("  WARNING: {} events lost", h.lost_events),
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(
        Paragraph::new(vec![first, Line::from(probes)])
            .block(Block::new().borders(Borders::BOTTOM)),
        area,
    );
}

fn render_modes(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let header = Row::new([
        "mode", "calls", "MiB/s", "p50", "p99", "cpu/MiB", "vs pread",
    ])
    .style(Style::new().add_modifier(Modifier::BOLD));
    let rows = s.modes.iter().enumerate().map(|(i, m)| {
        let versus = m
            .versus
            .iter()
            .find(|(b, _, _)| b == "pread")
            .or(m.versus.first())
            .map(|(b, t, _)| format!("x{t:.2} {}", if b == "pread" { "" } else { b }))
            .unwrap_or_else(|| "-".into());
        let or_dash = |ns: f64| {
            if m.calls == 0 {
                "-".to_string()
            } else {
                duration_ns(ns)
            }
        };
        let row = Row::new([
            format!("{}{}", if i == s.selected { "> " } else { "  " }, m.name),
            m.calls.to_string(),
            format!("{:.0}", m.mib_per_s),
            or_dash(m.latency.p50_ns as f64),
            or_dash(m.latency.p99_ns as f64),
            or_dash(m.cpu.cpu_ns_per_mib),
            versus,
        ]);
        if i == s.selected {
            row.style(Style::new().add_modifier(Modifier::REVERSED))
        } else {
            row
        }
    });
    let widths = [
        Constraint::Length(26),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Min(8),
    ];
    let mut block = Block::bordered().title(" modes ");
    // A trace's latest request of the selected kind, decoded.
    if let Some(req) = s
        .modes
        .get(s.selected)
        .and_then(|m| m.last_request.as_deref())
    {
        block = block.title_bottom(format!(" {req} "));
    }
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// Horizontal bars, one line per non-empty bucket range, scaled to the width.
fn histogram_lines(
    h: &Buckets,
    label: impl Fn(u64) -> String,
    width: u16,
    max_lines: usize,
) -> Vec<Line<'static>> {
    let first = h.buckets.iter().position(|b| b.1 > 0);
    let last = h.buckets.iter().rposition(|b| b.1 > 0);
    let (Some(first), Some(last)) = (first, last) else {
        return vec![Line::from("no samples yet")];
    };
    let mut shown: Vec<(u64, u64)> = h.buckets[first..=last].to_vec();
    // Too many buckets for the height: merge neighbours.
    while shown.len() > max_lines.max(1) {
        shown = shown
            .chunks(2)
            .map(|c| (c[c.len() - 1].0, c.iter().map(|b| b.1).sum()))
            .collect();
    }
    let peak = shown.iter().map(|b| b.1).max().unwrap_or(1).max(1);
    let bar_w = width.saturating_sub(24) as u64;
    shown
        .into_iter()
        .map(|(upper, n)| {
            let len = (n * bar_w).div_ceil(peak) as usize;
            Line::from(format!(
                "≤{:>10} │{:<w$} {n}",
                label(upper),
                "█".repeat(len),
                w = bar_w as usize
            ))
        })
        .collect()
}

fn render_latency(frame: &mut Frame, area: Rect, m: &ModeView) {
    let block =
        Block::bordered().title(format!(" per-call latency: {} (tab: cpu, block) ", m.name));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [hist, pct] =
        Layout::horizontal([Constraint::Min(20), Constraint::Length(18)]).areas(inner);
    let l = &m.latency;
    let lines = histogram_lines(
        &l.hist,
        |ns| duration_ns(ns as f64),
        hist.width,
        hist.height as usize,
    );
    frame.render_widget(Paragraph::new(lines), hist);
    let mut p = vec![
        Line::from(format!("min   {}", duration_ns(l.min_ns as f64))),
        Line::from(format!("p50   {}", duration_ns(l.p50_ns as f64))),
        Line::from(format!("p90   {}", duration_ns(l.p90_ns as f64))),
        Line::from(format!("p99   {}", duration_ns(l.p99_ns as f64))),
        Line::from(format!("p99.9 {}", duration_ns(l.p999_ns as f64))),
        Line::from(format!("max   {}", duration_ns(l.max_ns as f64))),
    ];
    if l.clamped > 0 {
        p.push(Line::styled(
            format!("{} clamped", l.clamped),
            Style::new().fg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(p), pct);
}

fn render_cpu(frame: &mut Frame, area: Rect, m: &ModeView) {
    let block = Block::bordered().title(format!(" CPU cost: {} ", m.name));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let c = &m.cpu;
    let mut lines = vec![
        Line::from(format!(
            "user {}  sys {}  per MiB {}",
            duration_ns(c.user_ns as f64),
            duration_ns(c.sys_ns as f64),
            duration_ns(c.cpu_ns_per_mib)
        )),
        match (c.on_cpu_ns, c.off_cpu_ns) {
            (Some(on), Some(off)) => Line::from(format!(
                "on-CPU {}  off-CPU {}  ({:.0}% waiting)",
                duration_ns(on as f64),
                duration_ns(off as f64),
                if on + off > 0 {
                    off as f64 * 100.0 / (on + off) as f64
                } else {
                    0.0
                }
            )),
            _ => Line::styled(
                "on/off-CPU: needs the scheduler probe",
                Style::new().fg(Color::Yellow),
            ),
        },
        Line::from("per-call CPU (thread clock, user + sys):"),
    ];
    let rest = inner.height.saturating_sub(3) as usize;
    lines.extend(histogram_lines(
        &c.per_call,
        |ns| duration_ns(ns as f64),
        inner.width,
        rest,
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_block(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let b = &s.block;
    let block = Block::bordered().title(" block layer (this run) ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if !b.available {
        frame.render_widget(Paragraph::new("no block probe (needs root)"), inner);
        return;
    }
    let devices: Vec<String> = b
        .per_device
        .iter()
        .map(|(d, n)| format!("{d} {}", bytes(*n as f64)))
        .collect();
    let mut lines = vec![Line::from(format!(
        "{} requests  {}  avg in flight {:.2}  {}",
        b.requests,
        bytes(b.bytes as f64),
        b.avg_in_flight,
        devices.join(", ")
    ))];
    let half = inner.height.saturating_sub(3) as usize / 2;
    lines.push(Line::from("request size:"));
    lines.extend(histogram_lines(
        &b.sizes,
        |n| bytes(n as f64),
        inner.width,
        half.max(1),
    ));
    lines.push(Line::from("device latency:"));
    lines.extend(histogram_lines(
        &b.device_latency,
        |ns| duration_ns(ns as f64),
        inner.width,
        half.max(1),
    ));
    frame.render_widget(Paragraph::new(lines), inner);
}

fn render_bandwidth(frame: &mut Frame, area: Rect, m: &ModeView) {
    let block = Block::bordered().title(format!(" bandwidth: {} ", m.name));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [text, spark] = Layout::vertical([Constraint::Length(2), Constraint::Min(1)]).areas(inner);
    let last = m.bandwidth.last().copied().unwrap_or(0);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!(
                "{:.0} MiB/s overall, {last} MiB/s last second",
                m.mib_per_s
            )),
            Line::from(format!(
                "{} moved in {} calls",
                bytes(m.bytes as f64),
                m.calls
            )),
        ]),
        text,
    );
    let start = m.bandwidth.len().saturating_sub(spark.width as usize);
    frame.render_widget(Sparkline::default().data(&m.bandwidth[start..]), spark);
}

/// The selected mode's top kernel functions, self and total, as perf
/// report shows them.
fn render_profile(frame: &mut Frame, area: Rect, m: &ModeView) {
    let block = Block::bordered().title(format!(" top kernel functions: {} ", m.name));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some(p) = &m.profile else {
        frame.render_widget(
            Paragraph::new(Line::styled(
                "no stack profile: run with --profile",
                Style::new().fg(Color::Yellow),
            )),
            inner,
        );
        return;
    };
    let [summary, table] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    let mut line = format!(
        "{} samples at {} Hz, {:.0}% in the kernel",
        p.samples, p.hz, p.kernel_pct
    );
    if p.unattributed > 0 {
        line.push_str(&format!(", {} not placed", p.unattributed));
    }
    frame.render_widget(Paragraph::new(line), summary);
    if p.functions.is_empty() {
        frame.render_widget(Paragraph::new("no kernel samples yet ..."), table);
        return;
    }
    let rows = p.functions.iter().map(|(f, own, total)| {
        Row::new([format!("{own:5.1}%"), format!("{total:5.1}%"), f.clone()])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new(["self", "total", "function"])
                .style(Style::new().add_modifier(Modifier::BOLD)),
        ),
        table,
    );
}

fn render_help(frame: &mut Frame, area: Rect) {
    let w = 50.min(area.width);
    let h = 11.min(area.height);
    let r = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from("q / Ctrl-C  quit (exports are finished cleanly)"),
            Line::from("p           pause / resume the display"),
            Line::from("r           reset the histograms and bandwidth"),
            Line::from("tab         latency -> CPU -> block -> profile"),
            Line::from("← → ↑ ↓     previous / next mode"),
            Line::from("?           this help"),
            Line::from(""),
            Line::from("The run goes on while the display is paused."),
        ])
        .block(Block::bordered().title(" keys ")),
        r,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;
    use crate::model::*;

    fn screen(s: &Snapshot, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| render(f, s)).unwrap();
        let buf = t.backend().buffer().clone();
        (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn sample() -> Snapshot {
        let lat = Buckets {
            buckets: vec![(1 << 20, 0), (1 << 22, 3), (1 << 23, 5), (1 << 24, 1)],
        };
        Snapshot {
            header: Header {
                kernel: "6.12.117".into(),
                direction: "read".into(),
                file: "/mnt/data-256m.bin".into(),
                cache: "cold".into(),
                buffers: "distinct".into(),
                probes: vec![
                    ProbeStatus {
                        name: "dma_buf_ioctl".into(),
                        method: Some("fentry".into()),
                        degraded: false,
                    },
                    ProbeStatus {
                        name: "rw_file".into(),
                        method: Some("fentry".into()),
                        degraded: false,
                    },
                ],
                lost_events: 0,
                probe_cost_pct: None,
                elapsed_s: 12.5,
                passes_done: 3,
                passes_planned: 9,
                running: Some("rw-file-direct".into()),
                paused: false,
                finished: false,
            },
            modes: vec![
                ModeView {
                    name: "pread".into(),
                    calls: 8,
                    bytes: 256 << 20,
                    mib_per_s: 181.0,
                    ..Default::default()
                },
                ModeView {
                    name: "rw-file-direct".into(),
                    calls: 9,
                    bytes: 288 << 20,
                    mib_per_s: 4241.0,
                    bandwidth: vec![3900, 4241],
                    latency: Latency {
                        hist: lat.clone(),
                        min_ns: 3_500_000,
                        p50_ns: 6_750_000,
                        p90_ns: 9_000_000,
                        p99_ns: 11_018_000,
                        p999_ns: 11_018_000,
                        max_ns: 11_018_000,
                        clamped: 0,
                    },
                    cpu: Cpu {
                        user_ns: 1000,
                        sys_ns: 14_000_000,
                        on_cpu_ns: Some(14_300_000),
                        off_cpu_ns: Some(46_000_000),
                        cpu_ns_per_mib: 63_500.0,
                        per_call: lat,
                    },
                    versus: vec![("pread".into(), 23.43, 0.04)],
                    profile: None,
                    last_request: None,
                },
            ],
            selected: 1,
            panel: Panel::Latency,
            block: BlockView::default(),
            show_help: false,
        }
    }

    #[test]
    fn the_numbers_on_screen_are_the_models() {
        let s = sample();
        let text = screen(&s, 120, 40);
        for want in [
            "kernel 6.12.117",
            "pass 3/9",
            "running rw-file-direct",
            "dma_buf_ioctl fentry",
            "4241",
            "p50   6.75 ms",
            "p99   11.02 ms",
            "x23.43",
            "> rw-file-direct",
            "4241 MiB/s overall",
            "288.0 MiB moved in 9 calls",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
        // One bar line per bucket from the first to the last non-empty one.
        assert_eq!(
            text.lines().filter(|l| l.contains(" │█")).count(),
            3,
            "{text}"
        );
    }

    #[test]
    fn a_traces_latest_request_of_the_selected_kind_is_decoded_under_the_modes() {
        let mut s = sample();
        let req = "READ|DIRECT fd=5 file_offset=0 buf_len=1048576 file=/mnt/d.bin";
        s.modes[s.selected].last_request = Some(req.into());
        let text = screen(&s, 120, 40);
        assert!(text.contains(req), "{text}");
        // Another row selected: its own (none), not the other's.
        s.selected = (s.selected + 1) % s.modes.len();
        assert!(!screen(&s, 120, 40).contains(req));
    }

    #[test]
    fn readable_at_80x24() {
        let text = screen(&sample(), 80, 24);
        assert!(
            text.contains("rw-file-direct") && text.contains("p50") && text.contains("q quit"),
            "{text}"
        );
    }

    #[test]
    fn empty_and_single_sample_states() {
        let empty = Snapshot::default();
        let text = screen(&empty, 80, 24);
        assert!(text.contains("waiting for the first call"), "{text}");
        assert!(text.contains("probes: off"), "{text}");

        let mut one = sample();
        one.modes.truncate(1);
        one.selected = 0;
        one.modes[0].latency = Latency {
            hist: Buckets {
                buckets: vec![(1 << 10, 1)],
            },
            min_ns: 900,
            p50_ns: 900,
            p90_ns: 900,
            p99_ns: 900,
            p999_ns: 900,
            max_ns: 900,
            clamped: 0,
        };
        let text = screen(&one, 80, 24);
        assert!(
            text.contains("p50   900 ns") && text.contains("│█"),
            "{text}"
        );
    }

    #[test]
    fn tiny_terminal_says_so_instead_of_panicking() {
        let text = screen(&sample(), 30, 8);
        assert!(text.contains("terminal too small"), "{text}");
        screen(&sample(), 1, 1);
    }

    #[test]
    fn other_panels_and_help() {
        let mut s = sample();
        s.panel = Panel::Cpu;
        let text = screen(&s, 100, 30);
        assert!(
            text.contains("on-CPU 14.30 ms") && text.contains("76% waiting"),
            "{text}"
        );
        s.panel = Panel::Block;
        s.block = BlockView {
            available: true,
            requests: 208,
            bytes: 256 << 20,
            sizes: Buckets {
                buckets: vec![(1 << 20, 200), (1 << 21, 8)],
            },
            device_latency: Buckets {
                buckets: vec![(1 << 22, 208)],
            },
            avg_in_flight: 1.5,
            per_device: vec![("253:0".into(), 256 << 20)],
        };
        let text = screen(&s, 100, 30);
        assert!(
            text.contains("208 requests") && text.contains("avg in flight 1.50"),
            "{text}"
        );
        s.show_help = true;
        assert!(screen(&s, 100, 30).contains("pause / resume the display"));
        s.header.lost_events = 7;
        assert!(screen(&s, 120, 30).contains("WARNING: 7 events lost"));
        assert!(screen(&s, 200, 30).contains("buffers distinct"));
        s.header.probe_cost_pct = Some(0.34);
        assert!(screen(&s, 160, 30).contains("probes cost 0.34% of call time"));
    }

    #[test]
    fn the_profile_panel_lists_the_selected_modes_top_functions() {
        let mut s = sample();
        s.panel = Panel::Profile;
        assert!(
            screen(&s, 100, 30).contains("no stack profile: run with --profile"),
            "{}",
            screen(&s, 100, 30)
        );
        s.modes[1].profile = Some(ProfileView {
            hz: 999,
            samples: 412,
            kernel_pct: 97.0,
            functions: vec![
                ("memcpy_orig".into(), 41.5, 41.5),
                ("system_heap_rw_file".into(), 0.2, 88.0),
            ],
            unattributed: 3,
        });
        let text = screen(&s, 100, 30);
        for want in [
            "top kernel functions: rw-file-direct",
            "412 samples at 999 Hz, 97% in the kernel, 3 not placed",
            " 41.5%  41.5% memcpy_orig",
            "  0.2%  88.0% system_heap_rw_file",
        ] {
            assert!(text.contains(want), "missing `{want}` in:\n{text}");
        }
        s.modes[1].profile.as_mut().unwrap().functions.clear();
        assert!(screen(&s, 100, 30).contains("no kernel samples yet"));
    }
}
