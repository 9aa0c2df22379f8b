//! Which frames to analyse for a camera's `analysis_fps`.
//!
//! One frame every `1/fps` of stream time, on a fixed schedule (so 10 of a
//! 25 fps stream gives 10 a second, not the 8.3 that "at least 100 ms since
//! the last" would), restarting the schedule after a gap (a stall, a
//! restart). The capture applies it to an H.264/H.265 camera's decoded
//! pictures before they are handed on (the evidence keeps the coded
//! stream, so a picture nobody analyses needs nothing more); the analysis
//! loop applies it to the frames of other sources, which the evidence keeps
//! decoded.

/// The schedule, on stream time in nanoseconds.
#[derive(Debug, Clone)]
pub struct AnalysisPace {
    every: Option<i128>,
    next: Option<i128>,
}

impl AnalysisPace {
    /// Frames within this of their due time count as due (half a frame of a
    /// 25 fps stream).
    const SLACK_NS: i128 = 20_000_000;

    /// A schedule of `fps` frames a second; `None` (or nonsense) analyses
    /// every frame.
    pub fn new(fps: Option<f64>) -> Self {
        Self {
            every: fps
                .filter(|f| f.is_finite() && *f > 0.0)
                .map(|f| (1e9 / f).round() as i128)
                .filter(|ns| *ns > 0),
            next: None,
        }
    }

    /// Whether the schedule lets frames through at all (an `fps` was set).
    pub fn thins(&self) -> bool {
        self.every.is_some()
    }

    /// Whether the frame shown at `t` (nanoseconds) is to be analysed.
    pub fn due(&mut self, t: i128) -> bool {
        let Some(every) = self.every else {
            return true;
        };
        let slack = Self::SLACK_NS;
        match self.next {
            Some(next) if t + slack < next && next - t <= every * 2 => false,
            // Due, or far off schedule (a gap, or time went back).
            Some(next) if t + slack >= next && t - next < every * 2 => {
                // The next slot after this frame: a late frame does not make
                // the following ones due at once.
                let mut due = next + every;
                while due <= t + slack {
                    due += every;
                }
                self.next = Some(due);
                true
            }
            _ => {
                self.next = Some(t + every);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AnalysisPace;

    const MS: i128 = 1_000_000;
    const T0: i128 = 1_741_914_930 * 1_000 * MS;

    fn analysed(fps: Option<f64>, source_fps: i128, seconds: i128) -> Vec<i128> {
        let mut pace = AnalysisPace::new(fps);
        let step = 1000 / source_fps;
        (0..source_fps * seconds)
            .map(|i| i * step)
            .filter(|ms| pace.due(T0 + ms * MS))
            .collect()
    }

    #[test]
    fn ten_of_twenty_five_a_second_on_a_fixed_schedule() {
        let got = analysed(Some(10.0), 25, 4);
        assert_eq!(got.len(), 40, "{got:?}");
        assert_eq!(&got[..5], &[0, 80, 200, 280, 400]);
        // No two analysed frames closer than one source frame apart, none
        // more than three apart.
        assert!(got.windows(2).all(|w| (40..=120).contains(&(w[1] - w[0]))));
    }

    #[test]
    fn unset_or_above_the_source_rate_analyses_every_frame() {
        assert_eq!(analysed(None, 25, 2).len(), 50);
        assert_eq!(analysed(Some(30.0), 25, 2).len(), 50);
        assert_eq!(analysed(Some(10.0), 10, 2).len(), 20);
        assert!(!AnalysisPace::new(Some(f64::NAN)).thins());
        assert!(!AnalysisPace::new(Some(0.0)).thins());
    }

    #[test]
    fn a_gap_or_a_restart_starts_the_schedule_afresh() {
        let mut pace = AnalysisPace::new(Some(5.0));
        assert!(pace.due(T0));
        assert!(!pace.due(T0 + 100 * MS));
        // A 10 s stall: analysed at once, then every 200 ms from there.
        let t1 = T0 + 10_000 * MS;
        assert!(pace.due(t1));
        assert!(!pace.due(t1 + 100 * MS));
        assert!(pace.due(t1 + 200 * MS));
        // Time going back (a restarted source): analysed, schedule reset.
        assert!(pace.due(T0));
        assert!(!pace.due(T0 + 40 * MS));
    }
}
