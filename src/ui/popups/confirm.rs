//! Confirm: a destructive action waits here. The title and lines name the target and the blast
//! radius; the keys come from the CONFIRM table.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use crate::keymap::KeyContext;
use crate::metrics::Level;
use crate::state::Confirm;
use crate::theme::Theme;
use crate::ui::widgets::badge;

use super::{centered, frame_popup};

const WIDTH: u16 = 72;

pub fn render(frame: &mut Frame, screen: Rect, confirm: &Confirm, theme: &Theme) {
    let width = WIDTH.min(screen.width.saturating_sub(4));
    let text_width = width.saturating_sub(4).max(1) as usize;
    // Wrapped height of the lines, plus a blank line, the question and the border; a typed
    // confirm adds its prompt, the word so far and the verdict on the last try.
    let body_rows: usize = confirm
        .lines
        .iter()
        .map(|l| l.chars().count().div_ceil(text_width).max(1))
        .sum();
    let typed_rows = if confirm.typed.is_some() { 3 } else { 0 };
    let height = body_rows as u16 + 2 + 2 + typed_rows;
    let area = centered(screen, width, height);
    let warn = theme.level(Level::Warn);
    let inner = frame_popup(
        frame,
        area,
        vec![Span::styled(
            format!(" {} {} ", badge::WARN, confirm.title),
            warn.add_modifier(Modifier::BOLD),
        )],
        // A typed confirm answers to its own keys (y is a letter of the word there).
        if confirm.typed.is_some() {
            KeyContext::TypedConfirm
        } else {
            KeyContext::Confirm
        },
        warn,
        theme,
    );
    let mut lines: Vec<Line<'_>> = confirm
        .lines
        .iter()
        .map(|l| Line::styled(l.as_str(), theme.text()))
        .collect();
    lines.push(Line::raw(""));
    match &confirm.typed {
        None => lines.push(Line::styled(
            "Go ahead?",
            theme.text().add_modifier(Modifier::BOLD),
        )),
        Some(word) => {
            let crit = theme.level(Level::Crit).add_modifier(Modifier::BOLD);
            lines.push(Line::from(vec![
                Span::styled("PRODUCTION. Type ", crit),
                Span::styled(
                    word.expected.clone(),
                    crit.add_modifier(Modifier::UNDERLINED),
                ),
                Span::styled(" and press enter to go ahead:", crit),
            ]));
            lines.push(Line::styled(
                format!("> {}▏", word.entered),
                theme.text().add_modifier(Modifier::BOLD),
            ));
            lines.push(if word.wrong {
                Line::styled(
                    format!(
                        "{} that is not the environment's name: nothing was done",
                        badge::CRIT
                    ),
                    theme.level(Level::Crit),
                )
            } else {
                Line::raw("")
            });
        }
    }
    let text = Rect::new(
        inner.x + 1,
        inner.y,
        inner.width.saturating_sub(2),
        inner.height,
    );
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text);
}

#[cfg(test)]
mod tests {
    use crate::state::Mode;
    use crate::ui::test_support::*;

    /// The popup the app itself opens for a catalog fault's key, drawn from the app's state.
    #[test]
    fn snapshots_at_both_sizes_name_target_blast_radius_and_keys() {
        let mut live = LiveApp::new("confirm", "");
        live.at(61_000).key('2');
        assert!(matches!(live.app.state.ui.mode, Mode::Confirm(_)));
        for (w, h) in SIZES {
            let text = live.screen(w, h);
            assert!(text.contains("Inject pg-hold?"), "{text}");
            assert!(text.contains("Blast radius"), "{text}");
            assert!(text.contains("Touches now: resolving…"), "{text}");
            assert!(text.contains("y / enter yes · n / esc no"), "{text}");
            insta::assert_snapshot!(format!("confirm_{w}x{h}"), text);
        }
    }

    /// On a production console the app asks for the environment's name to be typed.
    #[test]
    fn a_production_console_asks_for_the_name_typed() {
        let mut live = LiveApp::new(
            "confirm-production",
            "environment = \"prod-eu\"\nproduction = true",
        );
        live.app.state.allow_production = true;
        live.at(61_000).key('1');
        let text = live.screen(80, 24);
        assert!(
            matches!(&live.app.state.ui.mode, Mode::Confirm(c) if c.typed.is_some()),
            "{text}"
        );
        assert!(text.contains("Environment: prod-eu"), "{text}");
        assert!(
            !text.contains("y / enter yes"),
            "the popup's keys are the typed ones: {text}"
        );
        insta::assert_snapshot!("confirm_production_80x24", text);
    }
}
