//! Footer hints and help lines, both read from the key table in `crate::keymap`, never typed
//! twice. Bindings for the same action are grouped: `q / ctrl-c  quit`.

use crate::keymap::{self, Action, Binding, KeyContext};

/// The keys of one action in one context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGroup {
    pub action: Action,
    /// Every key label, with whether that key has a footer hint.
    pub keys: Vec<(&'static str, bool)>,
    /// The footer hint (the first binding's that has one).
    pub hint: Option<&'static str>,
    /// The help line (the first binding's).
    pub help: &'static str,
}

impl KeyGroup {
    /// `y / enter`: every key of the group.
    pub fn all_keys(&self) -> String {
        self.keys
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// Only the keys the footer shows.
    pub fn hinted_keys(&self) -> String {
        self.keys
            .iter()
            .filter(|(_, hinted)| *hinted)
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(" / ")
    }

    /// Reverting everything without confirmation deserves a warning colour.
    pub fn is_dangerous(&self) -> bool {
        self.action == Action::RevertAll
    }
}

/// The table of `context`, grouped by action in table order. The main screen also gets the fault
/// digits (`1-9`), right after quitting.
pub fn groups(context: KeyContext) -> Vec<KeyGroup> {
    let mut out: Vec<KeyGroup> = Vec::new();
    for b in keymap::table(context) {
        match out.iter_mut().find(|g| g.action == b.action) {
            Some(group) => add(group, b),
            None => out.push(KeyGroup {
                action: b.action,
                keys: vec![(b.label, b.hint.is_some())],
                hint: b.hint,
                help: b.help,
            }),
        }
    }
    if context == KeyContext::Normal {
        let after_quit = out
            .iter()
            .position(|g| g.action == Action::Quit)
            .map_or(out.len(), |i| i + 1);
        out.insert(
            after_quit,
            KeyGroup {
                action: Action::TriggerFault(1),
                keys: vec![(keymap::FAULT_KEYS_LABEL, true)],
                hint: Some(keymap::FAULT_KEYS_HINT),
                help: keymap::FAULT_KEYS_HELP,
            },
        );
    }
    out
}

fn add(group: &mut KeyGroup, b: &Binding) {
    group.keys.push((b.label, b.hint.is_some()));
    if group.hint.is_none() {
        group.hint = b.hint;
    }
}

/// The groups the footer shows: those with a hint.
pub fn footer(context: KeyContext) -> Vec<KeyGroup> {
    groups(context)
        .into_iter()
        .filter(|g| g.hint.is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_footer_of_the_main_screen_follows_the_table() {
        let hints: Vec<(String, &str)> = footer(KeyContext::Normal)
            .iter()
            .map(|g| (g.hinted_keys(), g.hint.unwrap()))
            .collect();
        let expected: Vec<(String, &str)> = [
            ("?", "help"),
            ("q", "quit"),
            ("1-9", "fault"),
            ("r", "revert"),
            ("X", "REVERT ALL"),
            ("m", "mark"),
            ("n", "note"),
            ("x", "export"),
            ("s", "scenario"),
            ("z", "zoom"),
            ("tab", "focus"),
        ]
        .iter()
        .map(|(k, h)| (k.to_string(), *h))
        .collect();
        assert_eq!(hints, expected);
    }

    #[test]
    fn every_binding_of_every_table_is_in_some_group() {
        for context in [
            KeyContext::Normal,
            KeyContext::Help,
            KeyContext::Confirm,
            KeyContext::TextInput,
            KeyContext::Picker,
        ] {
            let listed: Vec<&str> = groups(context)
                .iter()
                .flat_map(|g| g.keys.iter().map(|(k, _)| *k))
                .collect();
            for b in keymap::table(context) {
                assert!(listed.contains(&b.label), "{context:?}: {}", b.label);
            }
        }
        let confirm = groups(KeyContext::Confirm);
        assert_eq!(confirm[0].all_keys(), "y / enter");
        assert_eq!(confirm[0].hint, Some("yes"));
    }
}
