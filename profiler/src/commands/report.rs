//! `dmaprof report`: read the results (and the baseline), render the page,
//! write it atomically.
use std::path::Path;

use crate::{
    cli::ReportArgs,
    compare::{self, input},
    exit::Exit,
    export::{atomic, results},
    report::{self, Baseline},
};

pub fn report(a: ReportArgs) -> Result<Exit, Exit> {
    crate::export::check_writable("-o", &a.output).map_err(Exit::Input)?;
    let run = read(&a.results)?;
    let baseline = match &a.baseline {
        Some(base) => {
            read(base)?;
            let samples = |p: &Path| input::load(p).map_err(Exit::Input);
            let report = compare::compare(&samples(base)?, &samples(&a.results)?, None)
                .map_err(Exit::Input)?;
            Some((base.display().to_string(), report))
        }
        None => None,
    };
    let baseline = baseline.as_ref().map(|(path, report)| Baseline {
        path,
        report: report.clone(),
    });
    let page = report::render(&run, baseline.as_ref()).map_err(Exit::Failed)?;
    atomic::write(&a.output, page.as_bytes())
        .map_err(|e| Exit::failed(format!("-o {}: {e}", a.output.display())))?;
    eprintln!("dmaprof: wrote {}", a.output.display());
    Ok(Exit::Success)
}

/// A results document, or the one line saying why the file is not one.
fn read(path: &Path) -> Result<results::Results, Exit> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Exit::input(format!("{}: {e}", path.display())))?;
    results::parse(&text).map_err(|e| Exit::input(format!("{}: {e}", path.display())))
}
