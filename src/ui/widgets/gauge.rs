//! A one-row utilization bar: `██████▌░░░`.

use ratatui::text::Span;

use crate::theme::Theme;

const PARTIAL: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
const FULL: &str = "█";
const EMPTY: &str = "░";

/// A bar `width` cells wide filled to `fraction` (clamped to 0..1) in `style`, the rest muted.
pub fn bar(
    fraction: f64,
    width: u16,
    style: ratatui::style::Style,
    theme: &Theme,
) -> Vec<Span<'static>> {
    let width = width as usize;
    let eighths = if fraction.is_finite() {
        (fraction.clamp(0.0, 1.0) * (width * 8) as f64).round() as usize
    } else {
        0
    };
    let full = eighths / 8;
    let partial = PARTIAL[eighths % 8];
    let used = full + usize::from(!partial.is_empty());
    vec![
        Span::styled(format!("{}{partial}", FULL.repeat(full)), style),
        Span::styled(EMPTY.repeat(width.saturating_sub(used)), theme.muted()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(fraction: f64, width: u16) -> String {
        let theme = Theme::built_in("dark").unwrap();
        bar(fraction, width, theme.text(), &theme)
            .iter()
            .map(|s| s.content.as_ref())
            .collect()
    }

    #[test]
    fn bars_fill_in_eighths_and_keep_their_width() {
        assert_eq!(text(0.0, 4), "░░░░");
        assert_eq!(text(0.5, 4), "██░░");
        assert_eq!(text(0.5625, 4), "██▎░");
        assert_eq!(text(1.0, 4), "████");
        assert_eq!(text(7.0, 4), "████", "over 100% stays in its box");
        assert_eq!(text(f64::NAN, 2), "░░");
    }
}
