//! The key table. Dispatch, the footer hints and the help popup all read this one table, so
//! they cannot disagree.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Everything a key can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Help,
    Quit,
    /// Trigger the catalog fault bound to this digit (goes through a confirm popup).
    TriggerFault(u8),
    RevertSelected,
    RevertAll,
    /// Every console's faults, after a confirm.
    RevertEveryone,
    /// What every catalog fault would touch now, touching nothing.
    DryRun,
    Mark,
    Note,
    Export,
    Scenario,
    NextTheme,
    Zoom,
    FocusNext,
    FocusPrev,
    SelectUp,
    SelectDown,
    /// Leave the current popup or mode.
    Back,
    Confirm,
    Cancel,
    /// Replay: play or pause.
    PlayPause,
    /// Replay: play faster / slower (1× to 60×).
    Faster,
    Slower,
    /// Replay: move the position by this many seconds (negative: back).
    Seek(i32),
    /// Replay: jump to the next / previous fault, mark, phase change or threshold crossing.
    NextMoment,
    PrevMoment,
}

/// Which table applies: a popup consumes every key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyContext {
    Normal,
    Help,
    Confirm,
    /// Free text (notes): printable keys are text, only the table's keys are actions.
    TextInput,
    /// A list to pick from (scenarios).
    Picker,
    /// A confirm that needs a word typed (the environment's name on a production console).
    TypedConfirm,
    /// `gameday watch`: only keys that change this viewer's own screen.
    Watch,
    /// `gameday replay`: the viewer's keys plus the playback controls.
    Replay,
}

#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub key: KeyCode,
    pub modifiers: KeyModifiers,
    pub action: Action,
    /// How the key is written in hints (`?`, `1-9`, `tab`).
    pub label: &'static str,
    /// Short footer hint; `None` keeps it out of the footer (still in help).
    pub hint: Option<&'static str>,
    /// The help line.
    pub help: &'static str,
}

const fn key(
    c: char,
    action: Action,
    label: &'static str,
    hint: Option<&'static str>,
    help: &'static str,
) -> Binding {
    Binding {
        key: KeyCode::Char(c),
        modifiers: KeyModifiers::NONE,
        action,
        label,
        hint,
        help,
    }
}

const fn code(
    k: KeyCode,
    action: Action,
    label: &'static str,
    hint: Option<&'static str>,
    help: &'static str,
) -> Binding {
    Binding {
        key: k,
        modifiers: KeyModifiers::NONE,
        action,
        label,
        hint,
        help,
    }
}

const CTRL_C: Binding = Binding {
    key: KeyCode::Char('c'),
    modifiers: KeyModifiers::CONTROL,
    action: Action::Quit,
    label: "ctrl-c",
    hint: None,
    help: "quit (reverts every active fault first)",
};

/// The main screen. Digits 1–9 are listed once in help as `1-9` (see `FAULT_KEYS_HELP`).
pub const NORMAL: &[Binding] = &[
    key('?', Action::Help, "?", Some("help"), "show this help"),
    key(
        'q',
        Action::Quit,
        "q",
        Some("quit"),
        "quit (reverts every active fault first)",
    ),
    CTRL_C,
    key(
        'r',
        Action::RevertSelected,
        "r",
        Some("revert"),
        "revert the selected active fault",
    ),
    key(
        'X',
        Action::RevertAll,
        "X",
        Some("REVERT ALL"),
        "revert ALL active faults now, no confirm",
    ),
    key(
        'E',
        Action::RevertEveryone,
        "E",
        None,
        "revert EVERYONE's faults, other consoles' too (asks first)",
    ),
    key(
        'd',
        Action::DryRun,
        "d",
        None,
        "dry run: what each fault would touch now (touches nothing)",
    ),
    key(
        'm',
        Action::Mark,
        "m",
        Some("mark"),
        "mark this moment on the timeline",
    ),
    key(
        'n',
        Action::Note,
        "n",
        Some("note"),
        "add a note to the timeline",
    ),
    key(
        'x',
        Action::Export,
        "x",
        Some("export"),
        "export the report (Markdown, JSON, HTML)",
    ),
    key(
        's',
        Action::Scenario,
        "s",
        Some("scenario"),
        "run a scenario",
    ),
    key('t', Action::NextTheme, "t", None, "next theme"),
    key(
        'z',
        Action::Zoom,
        "z",
        Some("zoom"),
        "zoom the focused panel (screen share)",
    ),
    code(
        KeyCode::Tab,
        Action::FocusNext,
        "tab",
        Some("focus"),
        "focus the next panel",
    ),
    code(
        KeyCode::BackTab,
        Action::FocusPrev,
        "shift-tab",
        None,
        "focus the previous panel",
    ),
    code(
        KeyCode::Up,
        Action::SelectUp,
        "↑",
        None,
        "select up in the focused panel",
    ),
    code(
        KeyCode::Down,
        Action::SelectDown,
        "↓",
        None,
        "select down in the focused panel",
    ),
    code(KeyCode::Esc, Action::Back, "esc", None, "leave zoom"),
];

const fn shifted(k: KeyCode, action: Action, label: &'static str, help: &'static str) -> Binding {
    Binding {
        key: k,
        modifiers: KeyModifiers::SHIFT,
        action,
        label,
        hint: None,
        help,
    }
}

/// Keys that change only what this viewer shows: every viewer has its own.
macro_rules! viewer_keys {
    ($($extra:expr,)*) => {
        &[
            key('?', Action::Help, "?", Some("help"), "show this help"),
            key('q', Action::Quit, "q", Some("quit"), "quit (the session goes on)"),
            CTRL_C_VIEWER,
            $($extra,)*
            key('t', Action::NextTheme, "t", Some("theme"), "next theme (this screen only)"),
            key('z', Action::Zoom, "z", Some("zoom"), "zoom the focused panel"),
            code(KeyCode::Tab, Action::FocusNext, "tab", Some("focus"), "focus the next panel"),
            code(KeyCode::BackTab, Action::FocusPrev, "shift-tab", None, "focus the previous panel"),
            code(KeyCode::Up, Action::SelectUp, "↑", None, "scroll up in the focused panel"),
            code(KeyCode::Down, Action::SelectDown, "↓", None, "scroll down in the focused panel"),
            code(KeyCode::Esc, Action::Back, "esc", None, "leave zoom"),
        ]
    };
}

const CTRL_C_VIEWER: Binding = Binding {
    help: "quit (the session goes on)",
    ..CTRL_C
};

/// `gameday watch`: read-only by construction, no key here reaches a fault or a daemon.
pub const WATCH: &[Binding] = viewer_keys!();

/// `gameday replay`.
pub const REPLAY: &[Binding] = viewer_keys!(
    key(
        ' ',
        Action::PlayPause,
        "space",
        Some("play/pause"),
        "play or pause"
    ),
    key(
        '+',
        Action::Faster,
        "+",
        Some("faster"),
        "play faster (up to 60×)"
    ),
    key('=', Action::Faster, "=", None, "play faster (up to 60×)"),
    key(
        '-',
        Action::Slower,
        "-",
        Some("slower"),
        "play slower (down to 1×)"
    ),
    code(
        KeyCode::Left,
        Action::Seek(-10),
        "←",
        Some("-10s"),
        "back 10 seconds"
    ),
    code(
        KeyCode::Right,
        Action::Seek(10),
        "→",
        Some("+10s"),
        "forward 10 seconds"
    ),
    shifted(KeyCode::Left, Action::Seek(-60), "shift-←", "back 1 minute"),
    shifted(
        KeyCode::Right,
        Action::Seek(60),
        "shift-→",
        "forward 1 minute"
    ),
    key(
        ']',
        Action::NextMoment,
        "]",
        Some("next"),
        "next fault, mark, phase or threshold crossing"
    ),
    key(
        '[',
        Action::PrevMoment,
        "[",
        Some("prev"),
        "previous fault, mark, phase or threshold crossing"
    ),
    key(
        'x',
        Action::Export,
        "x",
        Some("export"),
        "export the report (Markdown, JSON, HTML)"
    ),
);

/// The digits: one help line for all nine.
pub const FAULT_KEYS_LABEL: &str = "1-9";
pub const FAULT_KEYS_HINT: &str = "fault";
pub const FAULT_KEYS_HELP: &str = "trigger a catalog fault (a popup names the target first)";

pub const HELP: &[Binding] = &[
    key('?', Action::Back, "?", Some("close"), "close help"),
    code(
        KeyCode::Esc,
        Action::Back,
        "esc",
        Some("close"),
        "close help",
    ),
    key('q', Action::Back, "q", None, "close help"),
    CTRL_C,
];

pub const CONFIRM: &[Binding] = &[
    key('y', Action::Confirm, "y", Some("yes"), "confirm"),
    code(KeyCode::Enter, Action::Confirm, "enter", None, "confirm"),
    key('n', Action::Cancel, "n", Some("no"), "cancel"),
    code(KeyCode::Esc, Action::Cancel, "esc", None, "cancel"),
    CTRL_C,
];

pub const TEXT_INPUT: &[Binding] = &[
    code(
        KeyCode::Enter,
        Action::Confirm,
        "enter",
        Some("save"),
        "save",
    ),
    code(
        KeyCode::Esc,
        Action::Cancel,
        "esc",
        Some("cancel"),
        "cancel (nothing is saved)",
    ),
    CTRL_C,
];

pub const TYPED_CONFIRM: &[Binding] = &[
    code(
        KeyCode::Enter,
        Action::Confirm,
        "enter",
        Some("confirm"),
        "confirm once the name is typed exactly",
    ),
    code(
        KeyCode::Esc,
        Action::Cancel,
        "esc",
        Some("cancel"),
        "cancel (nothing is changed)",
    ),
    CTRL_C,
];

pub const PICKER: &[Binding] = &[
    code(KeyCode::Up, Action::SelectUp, "↑", Some("up"), "previous"),
    code(KeyCode::Down, Action::SelectDown, "↓", Some("down"), "next"),
    code(
        KeyCode::Enter,
        Action::Confirm,
        "enter",
        Some("run"),
        "run the selected one",
    ),
    code(
        KeyCode::Esc,
        Action::Cancel,
        "esc",
        Some("cancel"),
        "cancel",
    ),
    CTRL_C,
];

pub fn table(context: KeyContext) -> &'static [Binding] {
    match context {
        KeyContext::Normal => NORMAL,
        KeyContext::Help => HELP,
        KeyContext::Confirm => CONFIRM,
        KeyContext::TextInput => TEXT_INPUT,
        KeyContext::Picker => PICKER,
        KeyContext::TypedConfirm => TYPED_CONFIRM,
        KeyContext::Watch => WATCH,
        KeyContext::Replay => REPLAY,
    }
}

/// What this key means here, if anything.
pub fn action_for(context: KeyContext, event: &KeyEvent) -> Option<Action> {
    // Shift is implied by the character itself ('X', '?'), so only ctrl/alt must match; on
    // other keys (arrows) shift means something of its own.
    let mut mask = KeyModifiers::CONTROL | KeyModifiers::ALT;
    if !matches!(event.code, KeyCode::Char(_) | KeyCode::BackTab) {
        mask |= KeyModifiers::SHIFT;
    }
    let significant = event.modifiers & mask;
    let found = table(context).iter().find(|b| {
        let code_matches = match (b.key, event.code) {
            (KeyCode::BackTab, KeyCode::BackTab) => true,
            (a, b) => a == b,
        };
        code_matches && b.modifiers == significant
    });
    if let Some(b) = found {
        return Some(b.action);
    }
    if context == KeyContext::Normal
        && significant.is_empty()
        && let KeyCode::Char(c @ '1'..='9') = event.code
    {
        return Some(Action::TriggerFault(c as u8 - b'0'));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn defaults_from_the_design_dispatch() {
        let n = KeyContext::Normal;
        let cases = [
            ('?', Action::Help),
            ('q', Action::Quit),
            ('r', Action::RevertSelected),
            ('X', Action::RevertAll),
            ('m', Action::Mark),
            ('n', Action::Note),
            ('x', Action::Export),
            ('s', Action::Scenario),
            ('t', Action::NextTheme),
            ('z', Action::Zoom),
            ('3', Action::TriggerFault(3)),
        ];
        for (c, a) in cases {
            assert_eq!(
                action_for(n, &press(KeyCode::Char(c), KeyModifiers::NONE)),
                Some(a),
                "{c}"
            );
        }
        // Terminals report 'X' with SHIFT set; it must still match.
        assert_eq!(
            action_for(n, &press(KeyCode::Char('X'), KeyModifiers::SHIFT)),
            Some(Action::RevertAll)
        );
        assert_eq!(
            action_for(n, &press(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for(n, &press(KeyCode::Tab, KeyModifiers::NONE)),
            Some(Action::FocusNext)
        );
        assert_eq!(
            action_for(n, &press(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::FocusPrev)
        );
        assert_eq!(
            action_for(n, &press(KeyCode::Char('0'), KeyModifiers::NONE)),
            None
        );
    }

    #[test]
    fn popups_consume_keys_and_digits_do_nothing_there() {
        let k = press(KeyCode::Char('1'), KeyModifiers::NONE);
        assert_eq!(action_for(KeyContext::Confirm, &k), None);
        assert_eq!(action_for(KeyContext::Help, &k), None);
        assert_eq!(
            action_for(
                KeyContext::Confirm,
                &press(KeyCode::Char('y'), KeyModifiers::NONE)
            ),
            Some(Action::Confirm)
        );
        assert_eq!(
            action_for(
                KeyContext::TextInput,
                &press(KeyCode::Char('q'), KeyModifiers::NONE)
            ),
            None,
            "q is text"
        );
    }

    #[test]
    fn no_key_is_bound_twice_in_a_table() {
        for ctx in [
            KeyContext::Normal,
            KeyContext::Help,
            KeyContext::Confirm,
            KeyContext::TextInput,
            KeyContext::Picker,
            KeyContext::Watch,
            KeyContext::Replay,
        ] {
            let t = table(ctx);
            for (i, a) in t.iter().enumerate() {
                for b in &t[i + 1..] {
                    assert!(
                        !(a.key == b.key && a.modifiers == b.modifiers),
                        "{ctx:?}: {} bound twice",
                        a.label
                    );
                }
            }
        }
    }
}
