//! What each [`Action`] does to the state: moving, the detail view, the
//! filter, sorting, grouping, the node, pausing and the interval.
use std::time::Duration;

use super::{Action, App, Effect, Grouping, INTERVAL_STEPS, Overlay, Screen, secs_text};
use crate::{
    columns::{Column, SourceKind},
    filter::{Term, parse_filter},
};

impl App {
    pub fn apply_action(&mut self, action: Action) -> Effect {
        self.dirty = true;
        match action {
            Action::Quit => return Effect::Quit,
            Action::Redraw => return Effect::Redraw,
            Action::Up => self.select(self.selected.saturating_sub(1)),
            Action::Down => self.select(self.selected + 1),
            Action::PageUp => self.select(self.selected.saturating_sub(self.page)),
            Action::PageDown => self.select(self.selected + self.page),
            Action::Home => self.select(0),
            Action::End => self.select(usize::MAX),
            Action::Enter => match self.screen {
                Screen::Table if self.selected().is_some() => self.screen = Screen::Detail,
                Screen::Table => self.say("nothing selected"),
                Screen::Detail => self.screen = Screen::Table,
            },
            Action::Back => match self.overlay {
                Overlay::None => self.screen = Screen::Table,
                _ => self.overlay = Overlay::None,
            },
            Action::Help => {
                self.overlay = match self.overlay {
                    Overlay::Help { .. } => Overlay::None,
                    _ => Overlay::Help { scroll: 0 },
                }
            }
            Action::HelpScroll(d) => {
                if let Overlay::Help { scroll } = &mut self.overlay {
                    *scroll = scroll.saturating_add_signed(d);
                }
            }
            Action::StartFilter => {
                self.editing_filter = true;
                self.screen = Screen::Table;
            }
            Action::FilterChar(c) => {
                self.filter.push(c);
                self.set_filter();
            }
            Action::FilterBackspace => {
                self.filter.pop();
                self.set_filter();
            }
            Action::FilterClearLine => {
                self.filter.clear();
                self.set_filter();
            }
            Action::FilterAccept => self.editing_filter = false,
            Action::FilterCancel => {
                self.editing_filter = false;
                self.filter.clear();
                self.set_filter();
            }
            Action::SortMenu => {
                let cursor = self
                    .sort_choices()
                    .iter()
                    .position(|c| *c == self.sort)
                    .unwrap_or(0);
                self.overlay = Overlay::SortMenu { cursor };
            }
            Action::SortMenuMove(d) => {
                let n = self.sort_choices().len();
                if let Overlay::SortMenu { cursor } = &mut self.overlay {
                    *cursor = (*cursor as isize + isize::from(d)).clamp(0, n as isize - 1) as usize;
                }
            }
            Action::SortMenuAccept => {
                if let Overlay::SortMenu { cursor } = self.overlay {
                    self.overlay = Overlay::None;
                    if let Some(&c) = self.sort_choices().get(cursor) {
                        self.sort_by(c);
                    }
                }
            }
            Action::SortPrev | Action::SortNext => {
                let choices = self.sort_choices();
                let at = choices.iter().position(|c| *c == self.sort).unwrap_or(0);
                let next = if action == Action::SortNext {
                    (at + 1) % choices.len()
                } else {
                    (at + choices.len() - 1) % choices.len()
                };
                self.set_sort(choices[next], choices[next].spec().descending_first);
            }
            Action::SortBy(c) => {
                if self.columns().contains(&c) {
                    self.sort_by(c);
                } else {
                    self.say(format!("no {} column here", c.spec().title));
                }
            }
            Action::InvertSort => {
                let desc = !self.descending;
                self.set_sort(self.sort, desc);
            }
            Action::ToggleGcOnly => {
                self.gc_only = !self.gc_only;
                self.say(if self.gc_only {
                    "only gc-heavy rows"
                } else {
                    "all rows"
                });
                self.rebuild();
            }
            Action::CycleGrouping => self.cycle_grouping(),
            Action::CycleNode => self.cycle_node(),
            Action::TogglePause => {
                self.paused = !self.paused;
                if !self.paused
                    && let Some(rows) = self.pending.take()
                {
                    self.apply(rows);
                }
                self.say(if self.paused {
                    "paused: press p to resume"
                } else {
                    "resumed"
                });
            }
            Action::Slower | Action::Faster => return self.step_interval(action == Action::Slower),
        }
        Effect::None
    }

    /// Sorts by `c`; by the same column again, reverses.
    fn sort_by(&mut self, c: Column) {
        if c == self.sort {
            self.set_sort(c, !self.descending);
        } else {
            self.set_sort(c, c.spec().descending_first);
        }
    }

    fn set_sort(&mut self, c: Column, descending: bool) {
        self.sort = c;
        self.descending = descending;
        self.say(format!(
            "sorted by {} {}",
            c.spec().title,
            if descending {
                "descending"
            } else {
                "ascending"
            }
        ));
        self.rebuild();
    }

    fn set_filter(&mut self) {
        self.terms = parse_filter(&self.filter);
        self.rebuild();
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    fn cycle_grouping(&mut self) {
        // Remote rows are workloads already (containers, else processes):
        // the next grouping up is the pod.
        let remote = self.source() == SourceKind::Remote;
        self.grouping = match (self.grouping, remote) {
            (Grouping::Processes, false) => Grouping::Containers,
            (Grouping::Containers, false) | (Grouping::Processes, true) => Grouping::Pods,
            (Grouping::Pods, _) | (Grouping::Containers, true) => Grouping::Processes,
        };
        // The sort column may not exist for these rows (PID vs PROCS).
        let columns = self.columns();
        if !columns.contains(&self.sort) {
            self.sort = match self.sort {
                Column::Pid => Column::Procs,
                Column::Procs => Column::Pid,
                _ => Column::Cpu,
            };
            if !columns.contains(&self.sort) {
                self.sort = Column::Cpu;
            }
        }
        self.selected = 0;
        self.selected_id = None;
        self.offset = 0;
        let note = match (self.grouping, remote) {
            (Grouping::Containers, _) => "grouped by container (else cgroup)",
            (Grouping::Pods, false) => "grouped by pod (else container, else cgroup)",
            (Grouping::Pods, true) => "grouped by pod (else workload)",
            (Grouping::Processes, false) => "one row per process",
            (Grouping::Processes, true) => "one row per workload",
        };
        self.say(note);
        self.rebuild();
    }

    fn cycle_node(&mut self) {
        if self.source() != SourceKind::Remote {
            self.say("n picks a node in remote mode (--collector)");
            return;
        }
        self.node = match &self.node {
            None => self.nodes.first().cloned(),
            Some(cur) => {
                let at = self.nodes.iter().position(|n| n == cur);
                at.and_then(|i| self.nodes.get(i + 1)).cloned()
            }
        };
        let text = match &self.node {
            Some(n) => format!("node {n}"),
            None => "all nodes".to_owned(),
        };
        self.say(text);
        self.rebuild();
    }

    fn step_interval(&mut self, slower: bool) -> Effect {
        let now = self.interval.as_secs_f64();
        let next = if slower {
            INTERVAL_STEPS.iter().copied().find(|&s| s > now + 1e-9)
        } else {
            INTERVAL_STEPS
                .iter()
                .rev()
                .copied()
                .find(|&s| s < now - 1e-9)
        };
        match next {
            Some(s) => {
                self.interval = Duration::from_secs_f64(s);
                self.say(format!("interval {}", secs_text(s)));
                Effect::SetInterval(self.interval)
            }
            None => {
                self.say(format!("interval stays {}", secs_text(now)));
                Effect::None
            }
        }
    }

    /// The columns `<`/`>` would move between, and which is sorted.
    pub fn sort_state(&self) -> (Column, bool) {
        (self.sort, self.descending)
    }
}
