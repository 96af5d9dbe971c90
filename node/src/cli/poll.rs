//! How often the CLI asks a node whether a job it follows is done.

use std::time::Duration;

/// Pauses between looks at a job: short at first, so a job of a fraction
/// of a second is seen done soon after it is (a flat 300 ms added up to
/// that to every short job's wall time), then no more often than `longest`.
pub struct Pauses {
    next: Duration,
    longest: Duration,
}

impl Pauses {
    pub fn up_to(longest: Duration) -> Self {
        Self { next: Duration::from_millis(10).min(longest), longest }
    }

    /// Waits the next pause.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.advance()).await;
    }

    fn advance(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.longest);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_10_ms_up_to_the_longest() {
        let mut pauses = Pauses::up_to(Duration::from_millis(300));
        let got: Vec<u128> = (0..7).map(|_| pauses.advance().as_millis()).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 300, 300]);
    }
}
