//! The bottom row: key hints of the current mode, straight from the key table. Hints that do not
//! fit are dropped from the end; help (`?`) comes first so it always shows.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::metrics::Level;
use crate::state::{AppState, Mode, Role};
use crate::theme::Theme;
use crate::ui::key_hints;
use crate::ui::widgets::text::{put_spans, put_spans_right, width};

const HINT_GAP: &str = "  ";

pub fn render(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let buf = frame.buffer_mut();
    let key_style = theme.accent().add_modifier(Modifier::BOLD);
    let mut spans: Vec<Span<'static>> = vec![Span::raw(" ")];
    for group in key_hints::footer(state.key_context()) {
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
    // A viewer says how many lines of its input were not events (never silently dropped).
    let malformed = match &state.ui.role {
        Role::Watch(w) => w.malformed,
        Role::Replay(r) => r.malformed,
        Role::Console => 0,
    };
    if malformed > 0 {
        let bad = [
            Span::styled(
                format!("{malformed} malformed line(s) skipped"),
                theme.level(Level::Warn),
            ),
            Span::raw(" "),
        ];
        if end + width(&bad) < area.right() {
            put_spans_right(buf, area, &bad);
        }
    } else if state.ui.mode == Mode::Normal {
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
