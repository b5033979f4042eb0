//! How a command ends, and the only place that turns that into an exit code:
//! 0 done, 1 a run (or a gate) failed, 2 unusable input, 130 interrupted.
//! Every non-zero outcome carries the one line that names the cause.
use std::process::ExitCode;

#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The work started and something failed, or a regression gate tripped: 1.
    Failed(String),
    /// Bad arguments, a bad file, missing privileges: 2.
    Input(String),
    /// SIGINT/SIGTERM: 130, after what was done is reported.
    Interrupted(String),
}

impl Exit {
    pub fn code(&self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed(_) => 1,
            Exit::Input(_) => 2,
            Exit::Interrupted(_) => 130,
        }
    }

    pub fn input(msg: impl std::fmt::Display) -> Exit {
        Exit::Input(msg.to_string())
    }

    pub fn failed(msg: impl std::fmt::Display) -> Exit {
        Exit::Failed(msg.to_string())
    }

    /// `--strict`: a success whose probes lost events is a failure.
    pub fn or_lost(self, lost: Option<&crate::probes::lost::Lost>, strict: bool) -> Exit {
        match (self, lost) {
            (Exit::Success, Some(l)) if strict && l.total() > 0 => Exit::Failed(format!(
                "--strict: the probes lost {} events: {l}",
                l.total()
            )),
            (exit, _) => exit,
        }
    }
}

impl From<Exit> for ExitCode {
    /// Prints the cause (one line on stderr) and returns the code.
    fn from(e: Exit) -> ExitCode {
        let code = e.code();
        match e {
            Exit::Success => {}
            Exit::Failed(m) | Exit::Input(m) | Exit::Interrupted(m) => eprintln!("dmaprof: {m}"),
        }
        ExitCode::from(code)
    }
}

/// Commands return `Result<Exit, Exit>` so `?` carries an early end; both
/// sides are an outcome.
pub fn outcome(r: Result<Exit, Exit>) -> Exit {
    r.unwrap_or_else(|e| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Exit::Success.code(), 0);
        assert_eq!(Exit::failed("x").code(), 1);
        assert_eq!(Exit::input("x").code(), 2);
        assert_eq!(Exit::Interrupted("x".into()).code(), 130);
        assert_eq!(outcome(Err(Exit::input("y"))), Exit::Input("y".into()));
    }
}
