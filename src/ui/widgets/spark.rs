//! A sparkline or, given more rows, a bar chart of one series over a time window:
//!
//! - each column is one time bucket and shows its largest value (spikes stay visible);
//! - bars are coloured by the threshold level of their value (and plain series colour without
//!   one), muted when the values are stale;
//! - explicit gaps (the source was down) show as `·` in the down colour, never as zero; a present
//!   zero still draws the lowest bar;
//! - columns inside a fault span get the theme's `fault_span` background (`░` without colour), so
//!   the effect of a fault is visible where it happened.

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;

use crate::metrics::{Series, Threshold};
use crate::state::FaultSpan;
use crate::theme::Theme;

const BARS: [&str; 9] = [" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"];
const GAP: &str = "·";
const FAULT_FILL_MONO: &str = "░";
/// The axis needs this many rows and columns to be worth its space.
const AXIS_MIN_HEIGHT: u16 = 3;
const AXIS_MIN_WIDTH: u16 = 16;
/// Labels get at least this many cells, so charts stacked in a panel line up.
const AXIS_LABEL_WIDTH: u16 = 5;

/// What one column shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bucket {
    /// No point in this time (before the series began, or no request then).
    Empty,
    /// The source was down.
    Gap,
    Value(f64),
}

pub struct Spark<'a> {
    series: Option<&'a Series>,
    now_ms: u64,
    window_ms: u64,
    spans: &'a [FaultSpan],
    threshold: Option<&'a Threshold>,
    scale_max: Option<f64>,
    stale: bool,
    color: Style,
    axis: Option<fn(f64) -> String>,
}

impl<'a> Spark<'a> {
    /// The last `window_ms` of `series` up to `now_ms`.
    pub fn new(series: Option<&'a Series>, now_ms: u64, window_ms: u64) -> Self {
        Spark {
            series,
            now_ms,
            window_ms,
            spans: &[],
            threshold: None,
            scale_max: None,
            stale: false,
            color: Style::new(),
            axis: None,
        }
    }

    pub fn fault_spans(mut self, spans: &'a [FaultSpan]) -> Self {
        self.spans = spans;
        self
    }

    pub fn threshold(mut self, threshold: Option<&'a Threshold>) -> Self {
        self.threshold = threshold;
        self
    }

    /// A fixed top of scale (1.0 for utilization); otherwise the largest value in the window.
    pub fn scale_max(mut self, max: f64) -> Self {
        self.scale_max = Some(max);
        self
    }

    pub fn stale(mut self, stale: bool) -> Self {
        self.stale = stale;
        self
    }

    /// Bar style for series without a threshold.
    pub fn color(mut self, style: Style) -> Self {
        self.color = style;
        self
    }

    /// Label the top of the scale (and 0) when the chart is tall enough.
    pub fn axis(mut self, label: fn(f64) -> String) -> Self {
        self.axis = Some(label);
        self
    }

    pub fn render(self, buf: &mut Buffer, area: Rect, theme: &Theme) {
        let mut area = area.intersection(*buf.area());
        if area.is_empty() {
            return;
        }
        let Some(observed_max) = self.observed_max(area.width) else {
            // Nothing in the window yet: an empty chart, not an axis over nothing.
            return;
        };
        let top = self
            .scale_max
            .unwrap_or(observed_max)
            .max(f64::MIN_POSITIVE);

        if let Some(label) = self.axis
            && area.height >= AXIS_MIN_HEIGHT
            && area.width >= AXIS_MIN_WIDTH
        {
            let top_label = label(top);
            let label_width = top_label.chars().count() as u16;
            let gutter = label_width.max(AXIS_LABEL_WIDTH) + 1;
            let style = theme.muted();
            buf.set_stringn(
                area.x + gutter - 1 - label_width.min(gutter - 1),
                area.y,
                &top_label,
                gutter as usize - 1,
                style,
            );
            buf.set_string(area.x + gutter - 2, area.bottom() - 1, "0", style);
            for y in area.top()..area.bottom() {
                buf.set_string(area.x + gutter - 1, y, "┤", style);
            }
            area.x += gutter;
            area.width -= gutter;
        }

        let (bucket_ms, start) = self.window(area.width);
        let buckets = self.buckets(area.width as usize, bucket_ms, start);
        let levels = area.height as usize * 8;
        for (i, bucket) in buckets.iter().enumerate() {
            let x = area.x + i as u16;
            match *bucket {
                Bucket::Empty => {}
                Bucket::Gap => {
                    buf.set_string(x, area.bottom() - 1, GAP, theme.down());
                }
                Bucket::Value(v) => {
                    let eighths = ((v.max(0.0) / top) * levels as f64).round() as usize;
                    let eighths = eighths.clamp(1, levels);
                    let style = self.bar_style(v, theme);
                    for row in 0..area.height {
                        let fill = eighths.saturating_sub(row as usize * 8).min(8);
                        if fill == 0 {
                            break;
                        }
                        buf.set_string(x, area.bottom() - 1 - row, BARS[fill], style);
                    }
                }
            }
        }
        self.shade_fault_spans(buf, area, bucket_ms, start, theme);
    }

    /// The largest value in the window (its length does not depend on the columns); `None` when
    /// the window holds neither values nor gaps.
    fn observed_max(&self, columns: u16) -> Option<f64> {
        let (bucket_ms, start) = self.window(columns);
        let buckets = self.buckets(columns as usize, bucket_ms, start);
        if buckets.iter().all(|b| *b == Bucket::Empty) {
            return None;
        }
        Some(
            buckets
                .iter()
                .filter_map(|b| match b {
                    Bucket::Value(v) => Some(*v),
                    _ => None,
                })
                .fold(0.0, f64::max),
        )
    }

    /// Bucket width and the start of the window for `columns` columns.
    fn window(&self, columns: u16) -> (u64, u64) {
        let columns = u64::from(columns.max(1));
        let bucket_ms = self.window_ms.div_ceil(columns).max(1);
        (bucket_ms, self.now_ms.saturating_sub(bucket_ms * columns))
    }

    fn bar_style(&self, value: f64, theme: &Theme) -> Style {
        if self.stale {
            theme.stale()
        } else if let Some(t) = self.threshold {
            theme.level(t.level(value))
        } else {
            self.color
        }
    }

    /// One bucket per column, newest last. Walks the series from the newest point back to the
    /// window start only, so long histories cost nothing extra.
    pub fn buckets(&self, columns: usize, bucket_ms: u64, start: u64) -> Vec<Bucket> {
        let mut out = vec![Bucket::Empty; columns];
        let Some(series) = self.series else {
            return out;
        };
        if columns == 0 {
            return out;
        }
        let index = |at: u64| (((at.max(start) - start) / bucket_ms) as usize).min(columns - 1);
        // The point after the one being looked at; a gap lasts until then (or until now).
        let mut next_value_at: Option<u64> = None;
        for p in series.points().rev() {
            match p.value {
                Some(v) => {
                    if p.at_ms >= start {
                        let slot = &mut out[index(p.at_ms)];
                        *slot = match *slot {
                            Bucket::Value(old) => Bucket::Value(old.max(v)),
                            _ => Bucket::Value(v),
                        };
                    }
                    next_value_at = Some(p.at_ms);
                }
                None => {
                    let end = next_value_at.unwrap_or(self.now_ms + 1);
                    if end > start {
                        let from = index(p.at_ms);
                        let to = index(end.saturating_sub(1));
                        for slot in &mut out[from..=to] {
                            if *slot == Bucket::Empty {
                                *slot = Bucket::Gap;
                            }
                        }
                    }
                }
            }
            if p.at_ms < start {
                break;
            }
        }
        out
    }

    fn shade_fault_spans(
        &self,
        buf: &mut Buffer,
        area: Rect,
        bucket_ms: u64,
        start: u64,
        theme: &Theme,
    ) {
        if self.spans.is_empty() {
            return;
        }
        for i in 0..area.width {
            let col_start = start + u64::from(i) * bucket_ms;
            let col_end = col_start + bucket_ms;
            let in_span = self.spans.iter().any(|s| {
                let to = s.to_ms.unwrap_or(self.now_ms);
                s.from_ms < col_end && to > col_start
            });
            if !in_span {
                continue;
            }
            let x = area.x + i;
            for y in area.top()..area.bottom() {
                let cell = &mut buf[(x, y)];
                match theme.fault_span_bg() {
                    Some(bg) => {
                        cell.set_bg(bg);
                    }
                    None if cell.symbol() == " " => {
                        cell.set_symbol(FAULT_FILL_MONO);
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Level;

    fn series(points: &[(u64, Option<f64>)]) -> Series {
        let mut s = Series::new(100);
        for (at, v) in points {
            s.push(*at, *v);
        }
        s
    }

    fn row(buf: &Buffer, y: u16) -> String {
        (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect()
    }

    #[test]
    fn buckets_keep_spikes_mark_gaps_and_leave_the_unknown_empty() {
        // 4 columns of 1 s ending at 8 s: [4,5) [5,6) [6,7) [7,8).
        let s = series(&[
            (4_100, Some(1.0)),
            (4_900, Some(9.0)),
            (5_500, None),
            (7_200, Some(3.0)),
        ]);
        let spark = Spark::new(Some(&s), 8_000, 4_000);
        assert_eq!(
            spark.buckets(4, 1_000, 4_000),
            vec![
                Bucket::Value(9.0),
                Bucket::Gap,
                Bucket::Gap,
                Bucket::Value(3.0)
            ]
        );
        // A gap that started before the window covers its start; a gap still open runs to now.
        let s = series(&[(1_000, Some(1.0)), (2_000, None)]);
        let spark = Spark::new(Some(&s), 8_000, 4_000);
        assert_eq!(spark.buckets(4, 1_000, 4_000), vec![Bucket::Gap; 4]);
        let s = series(&[(6_000, Some(2.0))]);
        let spark = Spark::new(Some(&s), 8_000, 4_000);
        assert_eq!(
            spark.buckets(4, 1_000, 4_000),
            vec![
                Bucket::Empty,
                Bucket::Empty,
                Bucket::Value(2.0),
                Bucket::Empty
            ]
        );
    }

    #[test]
    fn bars_scale_to_the_largest_value_zero_still_shows_and_gaps_do_not() {
        let theme = Theme::built_in("dark").unwrap();
        let s = series(&[
            (0, Some(0.0)),
            (1_000, Some(4.0)),
            (2_000, Some(8.0)),
            (3_000, None),
        ]);
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 1));
        Spark::new(Some(&s), 4_000, 4_000).render(&mut buf, Rect::new(0, 0, 4, 1), &theme);
        assert_eq!(row(&buf, 0), "▁▄█·");
        assert_eq!(buf[(3, 0)].fg, theme.palette.down);
    }

    #[test]
    fn bars_take_the_colour_of_their_level() {
        let theme = Theme::built_in("dark").unwrap();
        let s = series(&[(0, Some(5.0)), (1_000, Some(50.0)), (2_000, Some(500.0))]);
        let t = Threshold::above(Some(10.0), Some(100.0));
        let mut buf = Buffer::empty(Rect::new(0, 0, 3, 2));
        Spark::new(Some(&s), 3_000, 3_000)
            .threshold(Some(&t))
            .render(&mut buf, Rect::new(0, 0, 3, 2), &theme);
        assert_eq!(buf[(0, 1)].fg, theme.palette.ok);
        assert_eq!(buf[(1, 1)].fg, theme.palette.warn);
        assert_eq!(buf[(2, 0)].fg, theme.palette.crit);
        assert_eq!(theme.level(Level::Crit).fg, Some(theme.palette.crit));
        // Stale values are muted whatever their level.
        let mut buf = Buffer::empty(Rect::new(0, 0, 3, 2));
        Spark::new(Some(&s), 3_000, 3_000)
            .threshold(Some(&t))
            .stale(true)
            .render(&mut buf, Rect::new(0, 0, 3, 2), &theme);
        assert_eq!(buf[(2, 1)].fg, theme.palette.muted);
    }

    #[test]
    fn fault_spans_shade_their_columns_only() {
        let theme = Theme::built_in("dark").unwrap();
        let s = series(&[
            (0, Some(0.5)),
            (1_000, Some(0.5)),
            (2_000, Some(0.5)),
            (3_000, Some(0.5)),
        ]);
        let spans = [FaultSpan {
            name: "nats-stop".into(),
            from_ms: 1_200,
            to_ms: Some(2_500),
        }];
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 2));
        Spark::new(Some(&s), 4_000, 4_000)
            .fault_spans(&spans)
            .scale_max(1.0)
            .render(&mut buf, Rect::new(0, 0, 4, 2), &theme);
        let shaded: Vec<bool> = (0..4)
            .map(|x| buf[(x, 0)].bg == theme.palette.fault_span)
            .collect();
        assert_eq!(shaded, [false, true, true, false]);
        // Without colour the span is drawn as a fill above the bars.
        let mono = theme.monochrome();
        let mut buf = Buffer::empty(Rect::new(0, 0, 4, 2));
        Spark::new(Some(&s), 4_000, 4_000)
            .fault_spans(&spans)
            .scale_max(1.0)
            .render(&mut buf, Rect::new(0, 0, 4, 2), &mono);
        assert_eq!(row(&buf, 0), " ░░ ");
        assert_eq!(row(&buf, 1), "████");
    }

    #[test]
    fn a_tall_chart_gets_an_axis_and_tiny_areas_do_not_panic() {
        let theme = Theme::built_in("dark").unwrap();
        let s = series(&[(0, Some(1200.0)), (10_000, Some(300.0))]);
        let mut buf = Buffer::empty(Rect::new(0, 0, 20, 3));
        Spark::new(Some(&s), 20_000, 20_000)
            .axis(crate::ui::format::millis)
            .render(&mut buf, Rect::new(0, 0, 20, 3), &theme);
        assert!(row(&buf, 0).starts_with(" 1.2s┤"), "{}", row(&buf, 0));
        assert!(row(&buf, 2).starts_with("    0┤"), "{}", row(&buf, 2));
        let mut buf = Buffer::empty(Rect::new(0, 0, 20, 3));
        Spark::new(None, 20_000, 20_000)
            .axis(crate::ui::format::millis)
            .render(&mut buf, Rect::new(0, 0, 20, 3), &theme);
        assert!(
            buf.content().iter().all(|c| c.symbol() == " "),
            "no data, no axis"
        );
        for area in [
            Rect::new(0, 0, 0, 0),
            Rect::new(0, 0, 1, 1),
            Rect::new(5, 5, 3, 3),
        ] {
            let mut buf = Buffer::empty(Rect::new(0, 0, 2, 2));
            Spark::new(Some(&s), 20_000, 20_000)
                .axis(crate::ui::format::millis)
                .render(&mut buf, area, &theme);
        }
    }
}
