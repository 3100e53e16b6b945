//! Help: every key of the main screen (from the key table, `1-9` included), then one line per
//! popup with its keys.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::keymap::KeyContext;
use crate::theme::Theme;
use crate::ui::key_hints;
use crate::ui::widgets::text::put_spans;

use super::{centered, frame_popup, key_spans};

const WIDTH: u16 = 76;
const KEY_COLUMN: u16 = 12;
/// The popups, as the help names them.
const POPUPS: [(&str, KeyContext); 5] = [
    ("confirm", KeyContext::Confirm),
    ("note", KeyContext::TextInput),
    ("picker", KeyContext::Picker),
    ("typed", KeyContext::TypedConfirm),
    ("help", KeyContext::Help),
];

/// `main`: the table of the screen under the popup (the console's, a watcher's or a replay's).
pub fn render(frame: &mut Frame, screen: Rect, main: KeyContext, theme: &Theme) {
    // A viewer has no popup but this one.
    let popups: &[(&str, KeyContext)] = match main {
        KeyContext::Normal => &POPUPS,
        _ => &POPUPS[POPUPS.len() - 1..],
    };
    let main = key_hints::groups(main);
    // Main keys, a blank line, a heading, one line per popup, and the border; on a short screen
    // the popups go two to a line with no heading, so every key still shows at 80×24.
    let roomy = main.len() as u16 + 2 + popups.len() as u16 + 2;
    let compact = roomy > screen.height;
    let height = if compact {
        main.len() as u16 + popups.len().div_ceil(2) as u16 + 2
    } else {
        roomy
    };
    let area = centered(screen, WIDTH, height);
    let inner = frame_popup(
        frame,
        area,
        vec![Span::styled(
            " Keys ",
            theme.accent().add_modifier(Modifier::BOLD),
        )],
        KeyContext::Help,
        theme.border(true),
        theme,
    );
    let buf = frame.buffer_mut();
    let key_style = theme.accent().add_modifier(Modifier::BOLD);
    let mut y = inner.y;
    for group in &main {
        if y >= inner.bottom() {
            return;
        }
        let keys = group.all_keys();
        let pad = (KEY_COLUMN as usize).saturating_sub(keys.chars().count());
        let style = if group.is_dangerous() {
            theme.level(crate::metrics::Level::Crit)
        } else {
            key_style
        };
        put_spans(
            buf,
            Rect::new(inner.x + 1, y, inner.width.saturating_sub(1), 1),
            &[
                Span::styled(keys, style),
                Span::raw(" ".repeat(pad)),
                Span::styled(group.help, theme.text()),
            ],
        );
        y += 1;
    }
    if !compact {
        y += 1;
        if y < inner.bottom() {
            put_spans(
                buf,
                Rect::new(inner.x + 1, y, inner.width.saturating_sub(1), 1),
                &[Span::styled("in popups", theme.muted())],
            );
            y += 1;
        }
    }
    let per_line = if compact { 2 } else { 1 };
    for row in popups.chunks(per_line) {
        if y >= inner.bottom() {
            return;
        }
        let mut spans = Vec::new();
        for (i, (name, context)) in row.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw("  "));
            }
            let width = if compact {
                name.len() + 1
            } else {
                KEY_COLUMN as usize - 1
            };
            spans.push(Span::styled(format!("{name:<width$}"), theme.muted()));
            spans.extend(key_spans(*context, theme));
        }
        put_spans(
            buf,
            Rect::new(inner.x + 1, y, inner.width.saturating_sub(1), 1),
            &spans,
        );
        y += 1;
    }
}

#[cfg(test)]
mod tests {
    use crate::keymap::{self, KeyContext};
    use crate::state::Mode;
    use crate::ui::test_support::*;

    #[test]
    fn snapshots_at_both_sizes() {
        let mut state = state();
        state.ui.mode = Mode::Help;
        for (w, h) in SIZES {
            insta::assert_snapshot!(
                format!("help_{w}x{h}"),
                screen_text(&draw(&state, &theme(), w, h))
            );
        }
    }

    #[test]
    fn every_key_of_the_table_and_the_fault_digits_are_listed_at_80x24() {
        let mut state = state();
        state.ui.mode = Mode::Help;
        let text = screen_text(&draw(&state, &theme(), 80, 24));
        for b in keymap::NORMAL {
            assert!(text.contains(b.help), "{}: {}", b.label, b.help);
        }
        assert!(text.contains(keymap::FAULT_KEYS_LABEL));
        assert!(text.contains(keymap::FAULT_KEYS_HELP));
        for context in [
            KeyContext::Confirm,
            KeyContext::TextInput,
            KeyContext::Picker,
        ] {
            for b in keymap::table(context).iter().filter(|b| b.hint.is_some()) {
                assert!(text.contains(b.label), "{context:?}: {}", b.label);
            }
        }
    }
}
