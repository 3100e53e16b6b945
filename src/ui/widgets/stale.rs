//! Values of a source that is down: they stay on screen as the last known ones, dimmed, marked
//! `◌` instead of their level, and with their age, so nobody reads them as live.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Span;

use crate::metrics::Series;
use crate::state::AppState;
use crate::theme::Theme;
use crate::ui::format;

use super::text::put_spans;

/// The marker a stale row shows where its level (`✔`, `▲`, `✖`) would be.
pub const MARKER: &str = "◌";

pub fn marker(theme: &Theme) -> Span<'static> {
    Span::styled(MARKER, theme.stale())
}

/// When the newest value (not a gap) of `series` was taken.
pub fn last_known_at(series: &Series) -> Option<u64> {
    series
        .points()
        .rev()
        .find(|p| p.value.is_some())
        .map(|p| p.at_ms)
}

/// How old the last value of `key` is now; without one, how long `source` has been in its state.
pub fn age_ms(state: &AppState, key: &str, source: &str) -> u64 {
    let at = state
        .metrics
        .get(key)
        .and_then(last_known_at)
        .or_else(|| state.source(source).map(|s| s.since_ms))
        .unwrap_or(state.now_ms);
    state.now_ms.saturating_sub(at)
}

/// `last 12s ago`, or `12s ago`, or `12s`: the longest that fits in `width`.
pub fn age_text(age_ms: u64, width: u16) -> String {
    let ago = format::ago(age_ms);
    let long = format!("last {ago}");
    [long, ago, format::age(age_ms)]
        .into_iter()
        .find(|t| t.chars().count() <= width as usize)
        .unwrap_or_else(|| format::age(age_ms))
}

/// Writes the age on the first row of `area` (dimmed); returns the rows used (0 or 1).
pub fn put_age(buf: &mut Buffer, area: Rect, age_ms: u64, theme: &Theme) -> u16 {
    if area.is_empty() {
        return 0;
    }
    let row = Rect::new(area.x, area.y, area.width, 1);
    put_spans(
        buf,
        row,
        &[Span::styled(age_text(age_ms, area.width), theme.stale())],
    );
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_age_says_as_much_as_fits() {
        assert_eq!(age_text(12_000, 20), "last 12s ago");
        assert_eq!(age_text(12_000, 8), "12s ago");
        assert_eq!(age_text(12_000, 4), "12s");
    }

    #[test]
    fn the_last_value_is_the_newest_before_the_gap() {
        let mut s = Series::new(10);
        s.push(1_000, Some(1.0));
        s.push(2_000, Some(2.0));
        s.push(3_000, None);
        assert_eq!(last_known_at(&s), Some(2_000));
        assert_eq!(last_known_at(&Series::new(1)), None);
    }
}
