//! `dmaprof doctor`: the capability report, as text or JSON.
use crate::{cli::DoctorArgs, doctor, exit::Exit};

pub fn doctor(a: DoctorArgs) -> Result<Exit, Exit> {
    let path = match a.path {
        Some(p) if !p.exists() => {
            return Err(Exit::input(format!(
                "--path {}: no such file or directory",
                p.display()
            )));
        }
        Some(p) => p,
        None => {
            std::env::current_dir().map_err(|e| Exit::input(format!("current directory: {e}")))?
        }
    };
    let report = doctor::run(&doctor::Options { path: Some(path) });
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serializes")
        );
    } else {
        print!("{}", doctor::render_text(&report));
    }
    Ok(Exit::Success)
}
