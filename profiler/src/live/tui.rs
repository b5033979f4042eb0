//! The UI thread: draws at a steady rate, never blocks the workload (it
//! only takes the state lock to copy a snapshot), handles keys, and always
//! restores the terminal (ratatui's panic hook covers panics).
use std::{
    io,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use dashboards::model::Panel;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

use super::state::LiveState;

pub struct Ui {
    thread: Option<JoinHandle<io::Result<()>>>,
    finished: Arc<AtomicBool>,
}

/// Starts the dashboard. `stop` is set when the user quits: the workload
/// then ends between two calls and the exports are written.
pub fn start(state: Arc<Mutex<LiveState>>, stop: Arc<AtomicBool>, fps: f64) -> io::Result<Ui> {
    let mut terminal = ratatui::try_init()?;
    let finished = Arc::new(AtomicBool::new(false));
    let done = finished.clone();
    let frame = Duration::from_secs_f64(1.0 / fps.clamp(0.5, 60.0));
    let thread = std::thread::Builder::new()
        .name("dmaprof-ui".into())
        .spawn(move || {
            let result = (|| -> io::Result<()> {
                let (mut selected, mut panel, mut help, mut paused) =
                    (0usize, Panel::Latency, false, false);
                let mut next_frame = Instant::now();
                loop {
                    // Stopped by a signal, not by the user: once the run is
                    // over, give the terminal back instead of waiting for q.
                    if done.load(Ordering::Relaxed) && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let now = Instant::now();
                    if now >= next_frame {
                        if !paused {
                            let snap = {
                                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                                s.header.finished = done.load(Ordering::Relaxed);
                                s.snapshot(selected, panel, help)
                            };
                            terminal.draw(|f| dashboards::render(f, &snap))?;
                        }
                        next_frame = now + frame;
                    }
                    if !event::poll(next_frame.saturating_duration_since(Instant::now()))? {
                        continue;
                    }
                    match event::read()? {
                        Event::Key(k) if k.kind == KeyEventKind::Press => {
                            let ctrl_c = k.code == KeyCode::Char('c')
                                && k.modifiers.contains(KeyModifiers::CONTROL);
                            let modes = state
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .modes
                                .len()
                                .max(1);
                            match k.code {
                                KeyCode::Char('q') | KeyCode::Esc => break,
                                _ if ctrl_c => break,
                                KeyCode::Char('p') => {
                                    paused = !paused;
                                    state
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .header
                                        .paused = paused;
                                    if paused {
                                        // Show the paused marker once, then freeze.
                                        let snap = state
                                            .lock()
                                            .unwrap_or_else(|e| e.into_inner())
                                            .snapshot(selected, panel, help);
                                        terminal.draw(|f| dashboards::render(f, &snap))?;
                                    }
                                }
                                KeyCode::Char('r') => {
                                    state.lock().unwrap_or_else(|e| e.into_inner()).reset()
                                }
                                KeyCode::Tab => panel = panel.next(),
                                KeyCode::Char('?') => help = !help,
                                KeyCode::Left | KeyCode::Up => {
                                    selected = (selected + modes - 1) % modes
                                }
                                KeyCode::Right | KeyCode::Down => selected = (selected + 1) % modes,
                                _ => {}
                            }
                            next_frame = Instant::now();
                        }
                        Event::Resize(..) => next_frame = Instant::now(),
                        _ => {}
                    }
                }
                Ok(())
            })();
            stop.store(true, Ordering::Relaxed);
            ratatui::restore();
            result
        })?;
    Ok(Ui {
        thread: Some(thread),
        finished,
    })
}

impl Ui {
    /// The run is over: show it as finished and wait for the user to quit.
    pub fn finish(mut self) -> io::Result<()> {
        self.finished.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(io::Error::other("the dashboard thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Ui {
    /// Whatever happens, the terminal is given back.
    fn drop(&mut self) {
        if self.thread.is_some() {
            ratatui::restore();
        }
    }
}
