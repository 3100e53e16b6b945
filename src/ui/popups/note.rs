//! Note: free text for the timeline, with a block cursor at the end. Long text scrolls so the
//! end (where typing happens) stays in view.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::keymap::KeyContext;
use crate::theme::Theme;
use crate::ui::widgets::text::{ELLIPSIS, put_spans};

use super::{centered, frame_popup};

const WIDTH: u16 = 72;
const HEIGHT: u16 = 5;
const PROMPT: &str = "note: ";

pub fn render(frame: &mut Frame, screen: Rect, text: &str, theme: &Theme) {
    let area = centered(screen, WIDTH.min(screen.width.saturating_sub(4)), HEIGHT);
    let inner = frame_popup(
        frame,
        area,
        vec![Span::styled(
            " Note for the timeline ",
            theme.accent().add_modifier(Modifier::BOLD),
        )],
        KeyContext::TextInput,
        theme.border(true),
        theme,
    );
    let line = Rect::new(inner.x + 1, inner.y + 1, inner.width.saturating_sub(2), 1);
    // Prompt, text, cursor: keep the tail when it is too long.
    let room = (line.width as usize).saturating_sub(PROMPT.len() + 1);
    let chars = text.chars().count();
    let shown: String = if chars > room {
        let tail: String = text.chars().skip(chars - room.saturating_sub(1)).collect();
        format!("{ELLIPSIS}{tail}")
    } else {
        text.to_string()
    };
    put_spans(
        frame.buffer_mut(),
        line,
        &[
            Span::styled(PROMPT, theme.muted()),
            Span::styled(shown, theme.text()),
            Span::styled(" ", theme.text().add_modifier(Modifier::REVERSED)),
        ],
    );
}

#[cfg(test)]
mod tests {
    use crate::state::Mode;
    use crate::ui::test_support::*;

    #[test]
    fn snapshots_at_both_sizes_with_the_cursor_after_the_text() {
        let mut state = state();
        state.ui.mode = note_mode();
        for (w, h) in SIZES {
            let terminal = draw(&state, &theme(), w, h);
            let buf = terminal.backend().buffer();
            let end = find(buf, "queue at 14").unwrap();
            let cursor = &buf[(end.x + 11, end.y)];
            assert!(cursor.modifier.contains(ratatui::style::Modifier::REVERSED));
            insta::assert_snapshot!(format!("note_{w}x{h}"), screen_text(&terminal));
        }
    }

    #[test]
    fn a_long_note_keeps_its_end_in_view() {
        let mut state = state();
        let long = format!("{} the end", "word ".repeat(40));
        state.ui.mode = Mode::Note(long);
        let text = screen_text(&draw(&state, &theme(), 80, 24));
        assert!(text.contains("note: …"), "{text}");
        assert!(text.contains("the end"), "{text}");
    }
}
