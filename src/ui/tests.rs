//! Whole-screen tests: the dashboard at both reference sizes, honest states, the colours that
//! carry meaning, tiny terminals, themes without colour, and secrets.

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};

use crate::sources::SourceStatus;
use crate::state::{Mode, Panel, ToastKind};
use crate::theme::Theme;
use crate::ui::layout::panel_area;
use crate::ui::test_support::*;

#[test]
fn dashboard_snapshots_at_both_sizes() {
    let state = state();
    for (w, h) in SIZES {
        insta::assert_snapshot!(
            format!("dashboard_{w}x{h}"),
            screen_text(&draw(&state, &theme(), w, h))
        );
    }
}

#[test]
fn a_large_screen_uses_its_space_and_shows_whole_text() {
    let state = state();
    let (w, h) = LARGE;
    let text = screen_text(&draw(&state, &theme(), w, h));
    insta::assert_snapshot!("dashboard_300x100", text);
    for whole in [
        "postgres://app:***@127.0.0.1:5432/tasks",
        "idle in transaction 2",
        "warn 10 crit 100",
        "timeouts 30 · errors 4 · retries 12",
        "(upstream 127.0.0.1:9100: connection refused)",
        "since 10:08:40 (connection refused (http://127.0.0.1:8000/health?token=***))",
        "fault webhook-slow on telegram FAILED (key 3): proxy daemon not reachable",
        "webhook.telegram.latency_ms.p95 WARN (2400)",
    ] {
        assert!(text.contains(whole), "{whole}:\n{text}");
    }
    // Charts grow taller than the standard six rows.
    let area = panel_area(Rect::new(0, 0, w, h), Panel::Nats, false).unwrap();
    let panel = text_of(draw(&state, &theme(), w, h).backend().buffer(), area);
    let bars = panel.lines().filter(|l| l.contains('█')).count();
    assert!(bars > 12, "{panel}");
}

#[test]
fn the_essential_part_of_cut_text_stays_at_160x48() {
    let state = state();
    let text = screen_text(&draw(&state, &theme(), 160, 48));
    for essential in [
        "127.0.0.1:5432",
        "idle-tx 2",
        "w 10 c 100",
        "retry 12",
        "p99 99ms",
        "last 5m",
    ] {
        assert!(text.contains(essential), "{essential}:\n{text}");
    }
    assert!(!text.contains("pending pending"), "{text}");
}

#[test]
fn a_partitioned_broker_leaves_its_rows_stale_at_both_large_sizes() {
    // The last sample came at NOW_MS; the broker stopped answering a second later.
    let mut state = state();
    state.now_ms = NOW_MS + 12_000;
    state.metrics.gap(NOW_MS + 1_000, "nats.");
    set_source(
        &mut state,
        "nats",
        SourceStatus::down("no answer within 1.5s (frozen or partitioned?)"),
        NOW_MS + 1_000,
    );
    let theme = theme();
    for (w, h) in [(160, 48), LARGE] {
        let terminal = draw(&state, &theme, w, h);
        let text = screen_text(&terminal);
        insta::assert_snapshot!(format!("dashboard_nats_down_{w}x{h}"), text);
        let buf = terminal.backend().buffer();
        let area = panel_area(Rect::new(0, 0, w, h), Panel::Nats, false).unwrap();
        let panel = text_of(buf, area);
        assert!(
            !panel.contains('✔'),
            "no healthy mark on stale rows: {panel}"
        );
        assert!(panel.contains("12s ago"), "{panel}");
        let row = find_in(buf, area, "TASKS/notifier").unwrap();
        assert_eq!(buf[(area.x + 1, row.y)].symbol(), "◌");
        assert_eq!(buf[row].fg, theme.palette.muted, "the name is dimmed too");
    }
}

#[test]
fn nothing_configured_and_connecting_dashboards_are_honest() {
    let text = screen_text(&draw(&empty_state(), &theme(), 80, 24));
    insta::assert_snapshot!("dashboard_nothing_configured_80x24", text);
    assert_eq!(text.matches("not configured — add").count(), 4, "{text}");
    let text = screen_text(&draw(&connecting_state(), &theme(), 160, 48));
    insta::assert_snapshot!("dashboard_connecting_160x48", text);
    assert!(
        !text.contains("✔ up"),
        "nothing is up before it answers: {text}"
    );
}

#[test]
fn the_focused_panel_has_the_accent_border_and_the_others_do_not() {
    let mut state = state();
    let theme = theme();
    assert_eq!(
        theme.palette.border_focused, theme.palette.accent,
        "dark focuses in the accent"
    );
    for focus in Panel::ALL {
        state.ui.focus = focus;
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        for panel in Panel::ALL {
            let area = panel_area(Rect::new(0, 0, 160, 48), panel, false).unwrap();
            let corner = &buf[(area.x, area.y)];
            if panel == focus {
                assert_eq!(corner.fg, theme.palette.border_focused, "{panel:?}");
                assert_eq!(corner.symbol(), "┏", "focus is not colour alone");
            } else {
                assert_eq!(corner.fg, theme.palette.border, "{panel:?}");
                assert_eq!(corner.symbol(), "╭");
            }
        }
    }
}

#[test]
fn zoom_fills_the_body_with_the_focused_panel_at_both_sizes() {
    let mut state = state();
    state.ui.zoom = true;
    for (w, h) in SIZES {
        for panel in Panel::ALL {
            state.ui.focus = panel;
            let text = screen_text(&draw(&state, &theme(), w, h));
            let row = text.lines().nth(1).unwrap();
            assert!(
                row.starts_with(&format!("┏ {} zoomed", panel.title())),
                "{row}"
            );
            assert!(row.ends_with('┓'), "{row}");
        }
    }
}

#[test]
fn fault_spans_shade_the_charts_where_they_happened() {
    let state = state();
    let theme = theme();
    let terminal = draw(&state, &theme, 160, 48);
    let buf = terminal.backend().buffer();
    let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Nats, false).unwrap();
    let row = find_in(buf, area, "TASKS/workers").unwrap().y;
    let right = area.right() - 2;
    // pg-hold has been active for the last minute of the five the chart shows.
    assert_eq!(buf[(right, row)].bg, theme.palette.fault_span);
    let chart_left = right - 10;
    assert_eq!(buf[(chart_left, row)].bg, theme.palette.fault_span);
    assert_ne!(buf[(right - 30, row)].bg, theme.palette.fault_span);
}

#[test]
fn too_small_says_so_and_tiny_sizes_never_panic() {
    let state = state();
    let text = screen_text(&draw(&state, &theme(), 79, 23));
    insta::assert_snapshot!("too_small_79x23", text);
    assert!(text.contains("terminal too small (need 80x24, have 79x23)"));
    let text = screen_text(&draw(&state, &theme(), 80, 23));
    assert!(text.contains("have 80x23"));
    draw(&state, &theme(), 0, 0);
    let mut state = state;
    let modes = [
        Mode::Normal,
        Mode::Help,
        confirm_mode(),
        note_mode(),
        picker_mode(),
    ];
    state.ui.toast = Some(toast(
        ToastKind::Error,
        "a long error message that must wrap",
    ));
    for mode in modes {
        state.ui.mode = mode;
        for zoom in [false, true] {
            state.ui.zoom = zoom;
            for w in [0, 1, 2, 9, 40, 79, 80, 81, 119, 120, 200] {
                for h in [0, 1, 2, 5, 23, 24, 25, 60] {
                    draw(&state, &theme(), w, h);
                }
            }
        }
    }
}

#[test]
fn no_secret_ever_reaches_the_screen() {
    let mut state = state();
    // Sources and faults may echo secrets back; the config's redactor masks them all.
    set_source(
        &mut state,
        "pg",
        SourceStatus::down("password authentication failed: hunter2-pg-secret"),
        599_000,
    );
    state
        .faults
        .notices
        .push("nats token s3cr3t-nats-token rejected".into());
    state.faults.active[1].error = Some("upstream /bot123456:AAH-bot-secret/ refused".into());
    state.ui.toast = Some(toast(ToastKind::Error, "probe-secret-123 leaked?"));
    let modes = [
        Mode::Normal,
        Mode::Help,
        confirm_mode(),
        note_mode(),
        picker_mode(),
    ];
    for mode in modes {
        state.ui.mode = mode;
        for (w, h) in SIZES {
            for zoom in [
                None,
                Some(Panel::Postgres),
                Some(Panel::Faults),
                Some(Panel::Probes),
            ] {
                state.ui.zoom = zoom.is_some();
                state.ui.focus = zoom.unwrap_or(Panel::Nats);
                let text = screen_text(&draw(&state, &theme(), w, h));
                for secret in SECRETS {
                    assert!(!text.contains(secret), "{secret} on screen:\n{text}");
                }
            }
        }
    }
    // The masked forms are there, so the text was shown, not dropped.
    state.ui.mode = Mode::Normal;
    state.ui.zoom = true;
    state.ui.focus = Panel::Postgres;
    let text = screen_text(&draw(&state, &theme(), 160, 48));
    assert!(
        text.contains("postgres://app:***@127.0.0.1:5432/tasks"),
        "{text}"
    );
    assert!(
        text.contains("password authentication failed: ***"),
        "{text}"
    );
}

#[test]
fn without_colour_nothing_is_coloured_and_meaning_stays_in_symbols_and_modifiers() {
    let mut state = state();
    state.ui.toast = Some(toast(ToastKind::Info, "saved"));
    let mono = theme().monochrome();
    let terminal = draw(&state, &mono, 160, 48);
    let buf = terminal.backend().buffer();
    for cell in buf.content() {
        assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
    }
    let area = panel_area(Rect::new(0, 0, 160, 48), Panel::Nats, false).unwrap();
    let crit = find_in(buf, area, "1450").unwrap();
    assert!(buf[crit].modifier.contains(Modifier::REVERSED));
    assert_eq!(buf[(area.x + 1, crit.y)].symbol(), "✖");
    assert_eq!(buf[(area.x, area.y)].symbol(), "┏", "focus by weight");
    // Fault spans are drawn as a fill instead of a background.
    assert!(screen_text(&terminal).contains('░'));
}

#[test]
fn every_built_in_theme_draws_meaning_in_its_own_colours() {
    let state = state();
    for name in crate::theme::available(std::path::Path::new("no-such-dir")) {
        let theme = Theme::built_in(&name).unwrap();
        let terminal = draw(&state, &theme, 160, 48);
        let buf = terminal.backend().buffer();
        let nats = panel_area(Rect::new(0, 0, 160, 48), Panel::Nats, false).unwrap();
        let crit = find_in(buf, nats, "1450").unwrap();
        assert_eq!(buf[crit].fg, theme.palette.crit, "{name}");
        let down = find(buf, "(upstream 127.0.0.1:9100").unwrap();
        assert_eq!(buf[down].fg, theme.palette.down, "{name}");
        assert_eq!(
            buf[(nats.x, nats.y)].fg,
            theme.palette.border_focused,
            "{name}"
        );
        assert_eq!(buf[(0, 0)].bg, theme.palette.bg, "{name}");
    }
}

#[test]
fn the_header_keeps_time_and_faults_when_narrow() {
    let state = state();
    let narrow = screen_text(&draw(&state, &theme(), 80, 24));
    let header = narrow.lines().next().unwrap();
    assert!(header.contains("T+00:10:00"), "{header}");
    assert!(header.contains("◆ 1 fault active ✖ 1 failed"), "{header}");
    let wide = screen_text(&draw(&state, &theme(), 160, 48));
    let header = wide.lines().next().unwrap();
    for part in [
        "gameday drill-2026-11-28",
        "10:10:00 UTC",
        "cpu 21% mem 61%",
        "theme dark",
    ] {
        assert!(header.contains(part), "{part}: {header}");
    }
}

#[test]
fn the_footer_follows_the_mode() {
    let mut state = state();
    let footer = |state: &crate::state::AppState| {
        screen_text(&draw(state, &theme(), 160, 48))
            .lines()
            .last()
            .unwrap()
            .to_string()
    };
    assert!(footer(&state).starts_with(" ? help  q quit  1-9 fault  r revert  X REVERT ALL"));
    state.ui.mode = confirm_mode();
    assert!(
        footer(&state).starts_with(" y yes  n no"),
        "{}",
        footer(&state)
    );
    state.ui.mode = note_mode();
    assert!(footer(&state).starts_with(" enter save  esc cancel"));
    state.ui.mode = Mode::Help;
    assert!(footer(&state).starts_with(" ? / esc close"));
}
