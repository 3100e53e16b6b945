//! Picker: a list to choose from (scenarios), the selected row highlighted and kept in view.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::Span;

use crate::keymap::KeyContext;
use crate::state::Picker;
use crate::theme::Theme;
use crate::ui::widgets::text::put_spans;

use super::{centered, frame_popup};

const WIDTH: u16 = 72;
const MAX_ROWS: u16 = 12;
const LABEL_MAX: usize = 28;
const SELECTED: &str = "▶ ";

pub fn render(frame: &mut Frame, screen: Rect, picker: &Picker, theme: &Theme) {
    let rows = (picker.items.len().max(1) as u16).min(MAX_ROWS);
    let area = centered(screen, WIDTH.min(screen.width.saturating_sub(4)), rows + 2);
    let inner = frame_popup(
        frame,
        area,
        vec![Span::styled(
            format!(" {} ", picker.title),
            theme.accent().add_modifier(Modifier::BOLD),
        )],
        KeyContext::Picker,
        theme.border(true),
        theme,
    );
    let buf = frame.buffer_mut();
    if picker.items.is_empty() {
        put_spans(
            buf,
            Rect::new(inner.x + 1, inner.y, inner.width.saturating_sub(1), 1),
            &[Span::styled("nothing to pick", theme.muted())],
        );
        return;
    }
    let visible = inner.height as usize;
    let selected = picker.selected.min(picker.items.len() - 1);
    let first = (selected + 1).saturating_sub(visible);
    let label_width = picker
        .items
        .iter()
        .map(|i| i.label.chars().count())
        .max()
        .unwrap_or(0)
        .min(LABEL_MAX);
    for (n, item) in picker.items.iter().enumerate().skip(first).take(visible) {
        let y = inner.y + (n - first) as u16;
        let line = Rect::new(inner.x, y, inner.width, 1);
        let is_selected = n == selected;
        let marker = if is_selected { SELECTED } else { "  " };
        let label: String = item.label.chars().take(LABEL_MAX).collect();
        let style = if is_selected {
            theme.selection()
        } else {
            theme.text()
        };
        if is_selected {
            buf.set_style(line, theme.selection());
        }
        put_spans(
            buf,
            line,
            &[
                Span::styled(marker, style),
                Span::styled(
                    format!("{label:<label_width$}  "),
                    style.add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    item.detail.clone(),
                    if is_selected { style } else { theme.muted() },
                ),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::state::Mode;
    use crate::ui::test_support::*;

    #[test]
    fn snapshots_at_both_sizes_with_the_selection_highlighted() {
        let mut state = state();
        state.ui.mode = picker_mode();
        let theme = theme();
        for (w, h) in SIZES {
            let terminal = draw(&state, &theme, w, h);
            let buf = terminal.backend().buffer();
            let selected = find(buf, "▶ pg-pool-exhaustion").unwrap();
            assert_eq!(buf[selected].bg, theme.palette.selection);
            insta::assert_snapshot!(format!("picker_{w}x{h}"), screen_text(&terminal));
        }
    }

    #[test]
    fn a_long_list_keeps_the_selection_in_view() {
        let mut state = state();
        let Mode::Picker(mut picker) = picker_mode() else {
            unreachable!()
        };
        let template = picker.items[0].clone();
        picker.items = (0..40)
            .map(|i| crate::state::PickerItem {
                label: format!("scenario-{i:02}"),
                ..template.clone()
            })
            .collect();
        picker.selected = 33;
        state.ui.mode = Mode::Picker(picker);
        let text = screen_text(&draw(&state, &theme(), 80, 24));
        assert!(text.contains("▶ scenario-33"), "{text}");
    }
}
