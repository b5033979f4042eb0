//! The dashboard task on the agent's runtime: redraws on an interval, reads
//! keys from crossterm's event stream, never blocks the workload (it only
//! takes the state lock to copy a snapshot), and always gives the terminal
//! back (ratatui's panic hook covers panics, `Drop` the rest).
use std::{
    io,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use ratatui::{
    DefaultTerminal,
    crossterm::event::{Event, EventStream, KeyEventKind},
};
use tokio::{runtime::Runtime, task::JoinHandle, time::MissedTickBehavior};

use super::{
    keys::{self, Action, ViewState},
    state::LiveState,
};
use crate::stop::Stop;

pub struct Ui {
    task: Option<JoinHandle<io::Result<()>>>,
    finished: Stop,
    rt: tokio::runtime::Handle,
}

/// Starts the dashboard. When the user quits, `stop` is raised: the
/// workload then ends between two calls and the exports are written.
pub fn start(rt: &Runtime, state: Arc<Mutex<LiveState>>, stop: Stop, fps: f64) -> io::Result<Ui> {
    let terminal = ratatui::try_init()?;
    let finished = Stop::default();
    let frame = Duration::from_secs_f64(1.0 / fps.clamp(0.5, 60.0));
    let task = rt.spawn(run(terminal, state, stop, finished.clone(), frame));
    Ok(Ui {
        task: Some(task),
        finished,
        rt: rt.handle().clone(),
    })
}

async fn run(
    mut terminal: DefaultTerminal,
    state: Arc<Mutex<LiveState>>,
    stop: Stop,
    finished: Stop,
    frame: Duration,
) -> io::Result<()> {
    let result = async {
        let mut events = EventStream::new();
        let mut tick = tokio::time::interval(frame);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut view = ViewState::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Stopped by a signal, not by the user: once the run is
                    // over, give the terminal back instead of waiting for q.
                    if finished.requested() && stop.requested() {
                        return Ok(());
                    }
                    if !view.paused {
                        draw(&mut terminal, &state, &view, &finished)?;
                    }
                }
                event = events.next() => match event {
                    Some(Ok(Event::Key(k))) if k.kind == KeyEventKind::Press => {
                        if !on_key(keys::action(k), &mut view, &state) {
                            return Ok(());
                        }
                        draw(&mut terminal, &state, &view, &finished)?;
                    }
                    Some(Ok(Event::Resize(..))) => draw(&mut terminal, &state, &view, &finished)?,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
            }
        }
    }
    .await;
    stop.request();
    ratatui::restore();
    result
}

/// Applies a key; false when it quits.
fn on_key(a: Action, view: &mut ViewState, state: &Mutex<LiveState>) -> bool {
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    match a {
        Action::Quit => return false,
        Action::Reset => s.reset(),
        _ => view.apply(a, s.modes.len()),
    }
    s.header.paused = view.paused;
    true
}

fn draw(
    terminal: &mut DefaultTerminal,
    state: &Mutex<LiveState>,
    view: &ViewState,
    finished: &Stop,
) -> io::Result<()> {
    let snap = {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.header.finished = finished.requested();
        s.snapshot(view.selected, view.panel, view.help)
    };
    terminal.draw(|f| dashboards::render(f, &snap)).map(drop)
}

impl Ui {
    /// The run is over: show it as finished and wait for the user to quit.
    pub fn finish(mut self) -> io::Result<()> {
        self.finished.request();
        match self.task.take().map(|t| self.rt.block_on(t)) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the dashboard task panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Ui {
    /// Whatever happens, the terminal is given back.
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            ratatui::restore();
        }
    }
}
