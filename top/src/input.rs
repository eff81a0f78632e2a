//! Keys to [`Action`]s, by what is on screen (htop and bottom habits), and
//! the table of keys the help screen (and the README) lists.
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{
    app::{Action, App, Overlay, Screen},
    columns::Column,
};

/// Every key, as the help screen shows it: (keys, what they do). A unit
/// test checks that the README lists each of them too.
pub const KEYS: &[(&str, &str)] = &[
    ("↑ ↓  k j", "move the selection"),
    ("PgUp PgDn", "move a page"),
    ("Home End", "first row, last row"),
    (
        "Enter",
        "open the detail view of the selected row (again: back)",
    ),
    ("Esc Backspace", "leave the detail view, a menu or the help"),
    ("/", "filter (see below); Enter keeps it, Esc clears it"),
    (
        "s  F6",
        "sort menu: pick a column; the current one again reverses",
    ),
    ("< >", "sort by the column to the left / right"),
    ("I", "reverse the sort order"),
    ("P M N", "sort by CPU%, RSS, PID (again: reverse)"),
    ("g", "only gc-heavy rows (again: all)"),
    ("c", "group: processes → containers → pods"),
    ("n", "remote: next node (all nodes → each node)"),
    ("p", "pause the table (data is still collected)"),
    ("+ -", "longer / shorter interval"),
    ("Ctrl-L", "redraw the screen"),
    ("?  F1", "this help"),
    (
        "q  Esc  Ctrl-C  F10",
        "quit (Esc leaves the detail view first)",
    ),
];

/// The filter's syntax, for the help screen.
pub const FILTER_HELP: &[&str] = &[
    "Words match the name, pid, container id or cgroup, pod, runtime,",
    "verdict or node; every word must match. A field narrows a word:",
    "name: pid: container: pod: runtime: verdict: node:",
    "e.g. `verdict:gc-heavy`, `runtime:jvm payments`, `!idle` (! excludes).",
];

/// The action of a key press, given what is on screen; `None` ignores it.
pub fn action(app: &App, key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
        return Some(Action::Quit);
    }
    if ctrl && matches!(key.code, KeyCode::Char('l' | 'L')) {
        return Some(Action::Redraw);
    }
    if app.editing_filter {
        return filter_key(key, ctrl);
    }
    match app.overlay {
        Overlay::Help { .. } => return help_key(key),
        Overlay::SortMenu { .. } => return sort_menu_key(key),
        Overlay::None => {}
    }
    if ctrl {
        return None;
    }
    Some(match key.code {
        KeyCode::Char('q') | KeyCode::F(10) => Action::Quit,
        KeyCode::Esc if app.screen == Screen::Table => Action::Quit,
        KeyCode::Esc | KeyCode::Backspace => Action::Back,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home => Action::Home,
        KeyCode::End => Action::End,
        KeyCode::Enter => Action::Enter,
        KeyCode::Char('/') | KeyCode::F(4) => Action::StartFilter,
        KeyCode::Char('s') | KeyCode::F(6) => Action::SortMenu,
        KeyCode::Char('<' | ',') => Action::SortPrev,
        KeyCode::Char('>' | '.') => Action::SortNext,
        KeyCode::Char('I') => Action::InvertSort,
        KeyCode::Char('P') => Action::SortBy(Column::Cpu),
        KeyCode::Char('M') => Action::SortBy(Column::Rss),
        KeyCode::Char('N') => Action::SortBy(Column::Pid),
        KeyCode::Char('g') => Action::ToggleGcOnly,
        KeyCode::Char('c') => Action::CycleGrouping,
        KeyCode::Char('n') => Action::CycleNode,
        KeyCode::Char('p') => Action::TogglePause,
        KeyCode::Char('+' | '=') => Action::Slower,
        KeyCode::Char('-' | '_') => Action::Faster,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        _ => return None,
    })
}

fn filter_key(key: KeyEvent, ctrl: bool) -> Option<Action> {
    Some(match key.code {
        KeyCode::Esc => Action::FilterCancel,
        KeyCode::Enter => Action::FilterAccept,
        KeyCode::Backspace => Action::FilterBackspace,
        KeyCode::Char('u') if ctrl => Action::FilterClearLine,
        KeyCode::Up => Action::Up,
        KeyCode::Down => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Char(c) if !ctrl && !c.is_control() => Action::FilterChar(c),
        _ => return None,
    })
}

fn help_key(key: KeyEvent) -> Option<Action> {
    Some(match key.code {
        KeyCode::Char('q') | KeyCode::F(10) => Action::Quit,
        KeyCode::Esc | KeyCode::Enter | KeyCode::Backspace | KeyCode::Char('?') | KeyCode::F(1) => {
            Action::Help
        }
        KeyCode::Up | KeyCode::Char('k') => Action::HelpScroll(-1),
        KeyCode::Down | KeyCode::Char('j') => Action::HelpScroll(1),
        KeyCode::PageUp => Action::HelpScroll(-10),
        KeyCode::PageDown => Action::HelpScroll(10),
        _ => return None,
    })
}

fn sort_menu_key(key: KeyEvent) -> Option<Action> {
    Some(match key.code {
        KeyCode::Char('q') | KeyCode::F(10) => Action::Quit,
        KeyCode::Esc | KeyCode::Backspace | KeyCode::Char('s') | KeyCode::F(6) => Action::Back,
        KeyCode::Up | KeyCode::Char('k') => Action::SortMenuMove(-1),
        KeyCode::Down | KeyCode::Char('j') => Action::SortMenuMove(1),
        KeyCode::Home => Action::SortMenuMove(i16::MIN),
        KeyCode::End => Action::SortMenuMove(i16::MAX),
        KeyCode::Enter | KeyCode::Char(' ') => Action::SortMenuAccept,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{app::Settings, columns::SourceKind};

    fn app() -> App {
        App::new(Settings {
            source: SourceKind::Local,
            label: "test".into(),
            interval: Duration::from_secs(1),
            color: false,
            node: None,
        })
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_depend_on_what_is_on_screen() {
        let mut a = app();
        assert_eq!(action(&a, key(KeyCode::Char('q'))), Some(Action::Quit));
        assert_eq!(action(&a, key(KeyCode::Esc)), Some(Action::Quit));
        assert_eq!(
            action(&a, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action(&a, key(KeyCode::Char('c'))),
            Some(Action::CycleGrouping)
        );
        a.screen = Screen::Detail;
        assert_eq!(action(&a, key(KeyCode::Esc)), Some(Action::Back));
        assert_eq!(action(&a, key(KeyCode::Char('q'))), Some(Action::Quit));
        a.editing_filter = true;
        assert_eq!(
            action(&a, key(KeyCode::Char('q'))),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(action(&a, key(KeyCode::Esc)), Some(Action::FilterCancel));
        assert_eq!(
            action(&a, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit),
            "Ctrl-C quits even while typing a filter"
        );
        a.editing_filter = false;
        a.overlay = Overlay::SortMenu { cursor: 0 };
        assert_eq!(
            action(&a, key(KeyCode::Enter)),
            Some(Action::SortMenuAccept)
        );
        assert_eq!(action(&a, key(KeyCode::Esc)), Some(Action::Back));
    }

    #[test]
    fn the_readme_lists_every_key() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("## Interactive `agent top`")
            .nth(1)
            .expect("the README has an interactive top section");
        for (keys, _) in KEYS {
            assert!(
                section.contains(&format!("`{keys}`")),
                "README's interactive top section does not list `{keys}`"
            );
        }
    }
}
