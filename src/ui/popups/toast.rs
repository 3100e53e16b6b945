//! Toast: a short message in the bottom-right corner (above the footer) until its time is up.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use crate::metrics::Level;
use crate::state::{AppState, ToastKind};
use crate::theme::Theme;
use crate::ui::layout::FOOTER_HEIGHT;
use crate::ui::widgets::badge;

const MAX_WIDTH: u16 = 60;
const MAX_TEXT_ROWS: u16 = 3;

pub fn render(frame: &mut Frame, screen: Rect, state: &AppState, theme: &Theme) {
    let Some(toast) = &state.ui.toast else {
        return;
    };
    if toast.until_ms <= state.now_ms {
        return;
    }
    let (symbol, style) = match toast.kind {
        ToastKind::Info => ("ℹ", theme.accent()),
        ToastKind::Error => (badge::CRIT, theme.level(Level::Crit)),
    };
    let text = format!("{symbol} {}", state.config.redactor().text(&toast.text));
    let width = (text.chars().count() as u16 + 4)
        .min(MAX_WIDTH)
        .min(screen.width.saturating_sub(2));
    let text_width = width.saturating_sub(4).max(1);
    let rows = (text.chars().count() as u16)
        .div_ceil(text_width)
        .clamp(1, MAX_TEXT_ROWS);
    let height = rows + 2;
    let bottom = screen.bottom().saturating_sub(FOOTER_HEIGHT);
    if screen.width < width + 1 || bottom < screen.y + height {
        return;
    }
    let area = Rect::new(screen.right() - width - 1, bottom - height, width, height);
    let block = Block::bordered()
        .border_type(BorderType::Rounded)
        .border_style(style)
        .style(theme.base());
    let inner = block.inner(area);
    frame.render_widget(Clear, area);
    frame.render_widget(block, area);
    let text_area = Rect::new(
        inner.x + 1,
        inner.y,
        inner.width.saturating_sub(2),
        inner.height,
    );
    frame.render_widget(
        Paragraph::new(Line::from(Span::styled(
            text,
            style.add_modifier(Modifier::BOLD),
        )))
        .wrap(Wrap { trim: true }),
        text_area,
    );
}

#[cfg(test)]
mod tests {
    use crate::state::ToastKind;
    use crate::ui::test_support::*;

    #[test]
    fn snapshots_at_both_sizes_bottom_right_above_the_footer() {
        let mut state = state();
        state.ui.toast = Some(toast(
            ToastKind::Info,
            "report written: .artifacts/sessions/drill-2026-11-28/report.md",
        ));
        for (w, h) in SIZES {
            let terminal = draw(&state, &theme(), w, h);
            let buf = terminal.backend().buffer();
            let at = find(buf, "ℹ report written").unwrap();
            assert!(at.y >= h - 5, "{at:?}");
            assert_eq!(buf[(w - 2, at.y)].symbol(), "│", "flush right");
            insta::assert_snapshot!(format!("toast_{w}x{h}"), screen_text(&terminal));
        }
    }

    #[test]
    fn an_error_toast_is_crit_and_an_expired_one_is_gone() {
        let mut state = state();
        state.ui.toast = Some(toast(ToastKind::Error, "export failed: permission denied"));
        let theme = theme();
        let terminal = draw(&state, &theme, 80, 24);
        let buf = terminal.backend().buffer();
        let at = find(buf, "✖ export failed").unwrap();
        assert_eq!(buf[at].fg, theme.palette.crit);
        state.ui.toast.as_mut().unwrap().until_ms = NOW_MS;
        let text = screen_text(&draw(&state, &theme, 80, 24));
        assert!(!text.contains("export failed"));
    }
}
