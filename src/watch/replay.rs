//! A finished (or crashed) session played back: the whole timeline read once, the screen at any
//! position rebuilt by the same projection a live watcher uses. Moving back replays from the
//! start (applying is cheap next to parsing: see `gameday bench`).

use std::path::{Path, PathBuf};

use super::follow::{Batch, LineSplitter};
use super::project::Projection;
use crate::state::{AppState, FaultSpan, Moment, MomentKind, Replaying, Role};
use crate::timeline::{EventKind, FaultPhase, TimelineEvent};

/// Speeds `+` and `-` step through (× real time).
pub const SPEEDS: [u32; 6] = [1, 2, 5, 10, 30, 60];

pub struct Replay {
    events: Vec<TimelineEvent>,
    /// `events[..applied]` are in `projection`.
    applied: usize,
    position_ms: u64,
    projection: Projection,
}

impl Replay {
    /// Reads `dir/timeline.jsonl`. Lines that are not events are counted (and shown), never
    /// fatal; a file with no event at all is an error.
    pub fn open(dir: &Path, theme: String) -> Result<Replay, String> {
        let path = dir.join(crate::timeline::FILE_NAME);
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut batch = Batch::default();
        let mut lines = LineSplitter::default();
        lines.feed(&bytes, &mut batch);
        // The last line may be torn (a killed console): it still counts if it parses.
        lines.feed(b"\n", &mut batch);
        drop(bytes);
        Replay::from_events(dir.to_path_buf(), batch.events, batch.malformed, theme)
            .ok_or_else(|| format!("{}: no timeline event in it", path.display()))
    }

    pub fn from_events(
        dir: PathBuf,
        mut events: Vec<TimelineEvent>,
        malformed: u64,
        theme: String,
    ) -> Option<Replay> {
        // Offsets only grow in a file one console wrote; a stray older line must not send the
        // position backwards.
        events.sort_by_key(|e| e.offset_ms);
        let length_ms = events.last()?.offset_ms;
        let role = Role::Replay(Replaying {
            driver: None,
            length_ms,
            playing: false,
            speed: 1,
            moments: moments(&events),
            spans: spans(&events),
            malformed,
        });
        let mut replay = Replay {
            events,
            applied: 0,
            position_ms: 0,
            projection: Projection::new(role, theme, dir),
        };
        replay.seek(0);
        Some(replay)
    }

    pub fn state(&self) -> &AppState {
        &self.projection.state
    }

    pub fn state_mut(&mut self) -> &mut AppState {
        &mut self.projection.state
    }

    pub fn position_ms(&self) -> u64 {
        self.position_ms
    }

    pub fn length_ms(&self) -> u64 {
        self.replaying().length_ms
    }

    pub fn events(&self) -> &[TimelineEvent] {
        &self.events
    }

    fn replaying(&self) -> &Replaying {
        match &self.projection.state.ui.role {
            Role::Replay(r) => r,
            _ => unreachable!("a replay's role is Replay"),
        }
    }

    fn replaying_mut(&mut self) -> &mut Replaying {
        match &mut self.projection.state.ui.role {
            Role::Replay(r) => r,
            _ => unreachable!("a replay's role is Replay"),
        }
    }

    /// The screen as it was at `to_ms` into the session.
    pub fn seek(&mut self, to_ms: u64) {
        let to_ms = to_ms.min(self.length_ms());
        if to_ms < self.position_ms || self.applied == 0 {
            self.projection.restart();
            self.applied = 0;
        }
        while let Some(event) = self.events.get(self.applied) {
            if event.offset_ms > to_ms {
                break;
            }
            self.projection.apply(event);
            self.applied += 1;
        }
        self.position_ms = to_ms;
        self.projection.state.now_ms = to_ms;
        if to_ms >= self.length_ms() {
            self.replaying_mut().playing = false;
        }
    }

    /// Moves by `delta_ms` (negative: back).
    pub fn seek_by(&mut self, delta_ms: i64) {
        let to = self.position_ms.saturating_add_signed(delta_ms);
        self.seek(to);
    }

    /// Wall time passed while playing: the position moves by it times the speed.
    pub fn advance(&mut self, wall_ms: u64) {
        let r = self.replaying();
        if r.playing {
            let step = wall_ms * u64::from(r.speed);
            self.seek(self.position_ms + step);
        }
    }

    pub fn toggle_play(&mut self) {
        let at_end = self.position_ms >= self.length_ms();
        if at_end {
            self.seek(0);
        }
        let r = self.replaying_mut();
        r.playing = !r.playing;
    }

    /// One step along `SPEEDS` (+1 faster, -1 slower).
    pub fn change_speed(&mut self, step: i32) {
        let r = self.replaying_mut();
        let i = SPEEDS.iter().position(|s| *s == r.speed).unwrap_or(0) as i32;
        let i = (i + step).clamp(0, SPEEDS.len() as i32 - 1) as usize;
        r.speed = SPEEDS[i];
    }

    /// Jumps to the next (or previous) moment worth seeing; stays put when there is none.
    pub fn jump(&mut self, forward: bool) {
        let now = self.position_ms;
        let target = if forward {
            self.replaying()
                .moments
                .iter()
                .find(|m| m.at_ms > now)
                .map(|m| m.at_ms)
        } else {
            self.replaying()
                .moments
                .iter()
                .rev()
                .find(|m| m.at_ms < now)
                .map(|m| m.at_ms)
        };
        if let Some(at) = target {
            self.seek(at);
        }
    }
}

/// Faults applied or reverted, marks, phase changes and threshold crossings.
fn moments(events: &[TimelineEvent]) -> Vec<Moment> {
    events
        .iter()
        .filter_map(|e| {
            let kind = match &e.kind {
                EventKind::Fault {
                    phase: FaultPhase::Applied | FaultPhase::Reverted | FaultPhase::Failed,
                    ..
                } => MomentKind::Fault,
                EventKind::Mark { .. } | EventKind::Note { .. } => MomentKind::Mark,
                EventKind::ScenarioPhase { .. } | EventKind::Verdict { .. } => MomentKind::Phase,
                EventKind::Threshold { .. } => MomentKind::Threshold,
                _ => return None,
            };
            Some(Moment {
                at_ms: e.offset_ms,
                kind,
            })
        })
        .collect()
}

/// Every fault's span over the whole session, for the position bar.
fn spans(events: &[TimelineEvent]) -> Vec<FaultSpan> {
    let mut board = crate::state::FaultBoard::default();
    for e in events {
        if let Some(step) = crate::state::FaultStep::of(&e.kind) {
            board.apply(step, e.offset_ms);
        }
    }
    board.spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keymap::{self, KeyContext};
    use crate::state::Mode;
    use crate::ui::test_support::{draw, screen_text, theme};

    fn line(kind: EventKind, offset_ms: u64) -> String {
        let event = TimelineEvent {
            ts: "2026-12-01T10:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                + chrono::Duration::milliseconds(offset_ms as i64),
            offset_ms,
            kind,
        };
        format!("{}\n", serde_json::to_string(&event).unwrap())
    }

    fn session(name: &str, body: &[u8]) -> PathBuf {
        let dir = crate::services::testing::test_dir(name);
        std::fs::write(dir.join(crate::timeline::FILE_NAME), body).unwrap();
        dir
    }

    fn start() -> String {
        line(
            EventKind::SessionStart {
                session: "garbage".into(),
                config: "gameday.toml".into(),
                version: "0.1.0".into(),
                schema: crate::timeline::SCHEMA,
                thresholds: Default::default(),
            },
            0,
        )
    }

    #[test]
    fn garbage_binary_and_a_10_mb_line_are_counted_and_shown_never_fatal() {
        let mut body = start().into_bytes();
        body.extend_from_slice(b"this is not json\n");
        body.extend_from_slice(&[0x00, 0xff, 0x13, 0x37, b'\n']);
        body.extend(std::iter::repeat_n(b'{', 10 << 20));
        body.push(b'\n');
        body.extend_from_slice(
            line(
                EventKind::Mark {
                    label: "after the garbage".into(),
                },
                5_000,
            )
            .as_bytes(),
        );
        let dir = session("replay-garbage", &body);
        let mut replay = Replay::open(&dir, "dark".into()).unwrap();
        replay.seek(5_000);
        let Role::Replay(r) = &replay.state().ui.role else {
            panic!("a replay")
        };
        assert_eq!(r.malformed, 3);
        let screen = screen_text(&draw(replay.state(), &theme(), 160, 49));
        assert!(screen.contains("3 malformed line(s) skipped"), "{screen}");
        assert!(screen.contains("mark: after the garbage"), "{screen}");
    }

    #[test]
    fn a_file_of_nothing_but_garbage_is_an_error_naming_it() {
        let dir = session("replay-nothing", b"garbage\n\x00\x01\n");
        let Err(e) = Replay::open(&dir, "dark".into()) else {
            panic!("no event, no replay")
        };
        assert!(e.contains("timeline.jsonl: no timeline event"), "{e}");
    }

    #[test]
    fn seeking_jumping_and_speed_move_the_position_the_way_the_keys_say() {
        let mut body = start();
        for (at, label) in [(10_000, "one"), (70_000, "two"), (130_000, "three")] {
            body.push_str(&line(
                EventKind::Mark {
                    label: label.into(),
                },
                at,
            ));
        }
        let dir = session("replay-keys", body.as_bytes());
        let mut replay = Replay::open(&dir, "dark".into()).unwrap();
        assert_eq!(replay.position_ms(), 0);
        replay.jump(true);
        assert_eq!(replay.position_ms(), 10_000);
        replay.jump(true);
        assert_eq!(replay.position_ms(), 70_000);
        replay.jump(false);
        assert_eq!(replay.position_ms(), 10_000);
        replay.seek_by(60_000);
        assert_eq!(replay.state().timeline.len(), 3, "start, one, two");
        replay.seek_by(-65_000);
        assert_eq!(replay.position_ms(), 5_000);
        assert_eq!(
            replay.state().timeline.len(),
            1,
            "back before the first mark"
        );
        replay.seek_by(-10_000);
        assert_eq!(replay.position_ms(), 0);
        for _ in 0..10 {
            replay.change_speed(1);
        }
        replay.toggle_play();
        replay.advance(1_000);
        assert_eq!(replay.position_ms(), 60_000, "60× for one second");
        for _ in 0..10 {
            replay.change_speed(-1);
        }
        replay.advance(1_000);
        assert_eq!(replay.position_ms(), 61_000);
        replay.advance(100_000);
        assert_eq!(replay.position_ms(), 130_000, "stops at the end");
        let Role::Replay(r) = &replay.state().ui.role else {
            panic!("a replay")
        };
        assert!(!r.playing, "paused at the end");
    }

    #[test]
    fn the_help_of_a_replay_lists_every_key_of_its_table() {
        let dir = session("replay-help", start().as_bytes());
        let mut replay = Replay::open(&dir, "dark".into()).unwrap();
        replay.state_mut().ui.mode = Mode::Help;
        let screen = screen_text(&draw(replay.state(), &theme(), 160, 49));
        for binding in keymap::table(KeyContext::Replay) {
            assert!(
                screen.contains(binding.help),
                "{}: {}",
                binding.label,
                binding.help
            );
        }
        assert!(
            !screen.contains(keymap::FAULT_KEYS_HELP),
            "no fault keys on a replay"
        );
        insta::assert_snapshot!("replay_help_160x49", screen);
    }
}
