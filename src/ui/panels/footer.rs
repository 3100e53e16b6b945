//! The bottom row: key hints of the current mode, straight from the key table. Hints that do not
//! fit are dropped from the end; help (`?`) comes first so it always shows.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::metrics::Level;
use crate::state::{AppState, Mode};
use crate::theme::Theme;
use crate::ui::key_hints;
use crate::ui::widgets::text::{put_spans, put_spans_right, width};

const HINT_GAP: &str = "  ";

pub fn render(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let buf = frame.buffer_mut();
    let key_style = theme.accent().add_modifier(Modifier::BOLD);
    let mut spans: Vec<Span<'static>> = vec![Span::raw(" ")];
    for group in key_hints::footer(state.ui.mode.key_context()) {
        let style = if group.is_dangerous() {
            theme.level(Level::Crit)
        } else {
            key_style
        };
        let hint = [
            Span::styled(group.hinted_keys(), style),
            Span::raw(" "),
            Span::styled(group.hint.unwrap_or_default(), theme.text()),
            Span::raw(HINT_GAP),
        ];
        if width(&spans) + width(&hint) > area.width + HINT_GAP.len() as u16 {
            break;
        }
        spans.extend(hint);
    }
    let end = put_spans(buf, area, &spans);
    if state.ui.mode == Mode::Normal {
        let focus = [
            Span::styled("focus ", theme.muted()),
            Span::styled(state.ui.focus.title(), theme.text()),
            Span::raw(" "),
        ];
        if end + width(&focus) < area.right() {
            put_spans_right(buf, area, &focus);
        }
    }
}
