//! `dmaprof report`: read the results (and the baseline), render the page,
//! write it atomically.
use crate::{
    cli::ReportArgs,
    compare::{self, input},
    exit::Exit,
    export::atomic,
    report::{self, Baseline},
};

pub fn report(a: ReportArgs) -> Result<Exit, Exit> {
    crate::export::check_writable("-o", &a.output).map_err(Exit::Input)?;
    let (run, run_samples) = input::load_results(&a.results).map_err(Exit::Input)?;
    let baseline = match &a.baseline {
        Some(base) => {
            let (_, base_samples) = input::load_results(base).map_err(Exit::Input)?;
            let report =
                compare::compare(&base_samples, &run_samples, None).map_err(Exit::Input)?;
            Some(Baseline {
                path: base.display().to_string(),
                report,
            })
        }
        None => None,
    };
    let page = report::render(&run, baseline.as_ref()).map_err(Exit::Failed)?;
    atomic::write(&a.output, page.as_bytes())
        .map_err(|e| Exit::failed(format!("-o {}: {e}", a.output.display())))?;
    eprintln!("dmaprof: wrote {}", a.output.display());
    Ok(Exit::Success)
}
