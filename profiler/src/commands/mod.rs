//! One module per command, each a short function that reads top to bottom:
//! plan, open outputs, attach probes, run, summarise once, write, print.
mod compare;
mod doctor;
mod probes;
mod report;
mod run;
mod trace;

use crate::{
    cli::{Cli, Command},
    exit::{Exit, outcome},
    stop,
};

pub fn dispatch(cli: Cli) -> Exit {
    let rt = match stop::runtime() {
        Ok(rt) => rt,
        Err(e) => return Exit::failed(format!("starting the agent's runtime: {e}")),
    };
    outcome(match cli.command {
        Command::Run(a) => run::run(&rt, a),
        Command::Bench(a) => run::bench(&rt, a),
        Command::Trace(a) => trace::trace(&rt, a),
        Command::Compare(a) => compare::compare(a),
        Command::Doctor(a) => doctor::doctor(a),
        Command::Report(a) => report::report(a),
    })
}
