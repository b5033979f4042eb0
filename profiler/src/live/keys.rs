//! The dashboard's keys: a pure function from a key to an action, and the
//! view state the actions change (which mode, which panel, help, paused).
use dashboards::model::Panel;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    TogglePause,
    Reset,
    NextPanel,
    ToggleHelp,
    Previous,
    Next,
    Ignore,
}

pub fn action(key: KeyEvent) -> Action {
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('r') => Action::Reset,
        KeyCode::Tab => Action::NextPanel,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Left | KeyCode::Up => Action::Previous,
        KeyCode::Right | KeyCode::Down => Action::Next,
        _ => Action::Ignore,
    }
}

/// What the user chose to look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewState {
    pub selected: usize,
    pub panel: Panel,
    pub help: bool,
    pub paused: bool,
}

impl ViewState {
    /// Applies a navigation action over `modes` rows (Quit and Reset are the
    /// caller's: they act on the run and the live state).
    pub fn apply(&mut self, a: Action, modes: usize) {
        let modes = modes.max(1);
        match a {
            Action::TogglePause => self.paused = !self.paused,
            Action::NextPanel => self.panel = self.panel.next(),
            Action::ToggleHelp => self.help = !self.help,
            Action::Previous => self.selected = (self.selected + modes - 1) % modes,
            Action::Next => self.selected = (self.selected + 1) % modes,
            Action::Quit | Action::Reset | Action::Ignore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(action(key(KeyCode::Char('q'))), Action::Quit);
        assert_eq!(action(key(KeyCode::Esc)), Action::Quit);
        assert_eq!(
            action(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
        assert_eq!(action(key(KeyCode::Char('c'))), Action::Ignore);
        assert_eq!(action(key(KeyCode::Char('p'))), Action::TogglePause);
        assert_eq!(action(key(KeyCode::Char('r'))), Action::Reset);
        assert_eq!(action(key(KeyCode::Tab)), Action::NextPanel);
        assert_eq!(action(key(KeyCode::Char('?'))), Action::ToggleHelp);
        assert_eq!(action(key(KeyCode::Up)), Action::Previous);
        assert_eq!(action(key(KeyCode::Right)), Action::Next);
    }

    #[test]
    fn navigation_wraps_and_toggles() {
        let mut v = ViewState::default();
        v.apply(Action::Previous, 3);
        assert_eq!(v.selected, 2);
        v.apply(Action::Next, 3);
        assert_eq!(v.selected, 0);
        v.apply(Action::Next, 0); // no rows yet: stays in range
        assert_eq!(v.selected, 0);
        v.apply(Action::NextPanel, 3);
        assert_eq!(v.panel, Panel::Cpu);
        v.apply(Action::TogglePause, 3);
        v.apply(Action::ToggleHelp, 3);
        assert!(v.paused && v.help);
        v.apply(Action::TogglePause, 3);
        assert!(!v.paused);
    }
}
