//! The local time, as the chat shows it (`/time on`, history lines, `/search`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Local time of day as HH:MM.
pub(crate) fn clock_time(at: SystemTime) -> String {
    let tm = local(at);
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// Local date and time as YYYY-MM-DD HH:MM.
pub(crate) fn date_and_time(at: SystemTime) -> String {
    let tm = local(at);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
}

/// `at` in the local time zone.
fn local(at: SystemTime) -> libc::tm {
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let seconds = libc::time_t::try_from(seconds).unwrap_or(0);
    // SAFETY: `tm` is plain data that localtime_r fills in; both pointers are valid for the
    // call. localtime_r writes no shared state, but it reads the time zone (TZ and
    // /etc/localtime, once): that is safe because this program never changes the
    // environment once its threads run (systemd.rs takes LISTEN_* before the first starts).
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&seconds, &mut tm);
        tm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_of_day_is_hours_and_minutes() {
        let now = SystemTime::now();
        let time = clock_time(now);
        assert_eq!(time.len(), 5);
        assert_eq!(&time[2..3], ":");
        let (hours, minutes) = time.split_at(2);
        assert!(hours.parse::<u8>().is_ok_and(|h| h < 24), "{time}");
        assert!(minutes[1..].parse::<u8>().is_ok_and(|m| m < 60), "{time}");
        let stamp = date_and_time(now);
        assert_eq!(stamp.len(), 16, "{stamp}");
        assert!(stamp.ends_with(&time), "{stamp} {time}");
        assert!(stamp.starts_with("20"), "{stamp}");
    }
}
