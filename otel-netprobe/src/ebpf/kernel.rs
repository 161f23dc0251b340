//! What the running kernel is and offers: its release (named in every message about it), its
//! version against the supported floor, and the features the agent adapts to.

use std::fmt;

/// The oldest kernel line the programs are verified and tested on (`make test` boots it).
pub const FLOOR: (u32, u32) = (5, 10);

/// The running kernel's release, as `uname -r` prints it.
pub fn release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned())
}

/// A kernel version: major, minor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32);

impl Version {
    /// Parses the leading `major.minor` of a release string (`6.1.0-57-cloud-amd64`).
    pub fn parse(release: &str) -> Option<Self> {
        let mut parts = release.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Self(major, minor))
    }

    /// The running kernel's version.
    pub fn running() -> Option<Self> {
        Self::parse(&release())
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_release_strings() {
        assert_eq!(Version::parse("6.1.0-57-cloud-amd64"), Some(Version(6, 1)));
        assert_eq!(
            Version::parse("5.10.0-46-cloud-amd64"),
            Some(Version(5, 10))
        );
        assert_eq!(
            Version::parse("6.12.117+deb12-cloud-amd64"),
            Some(Version(6, 12))
        );
        assert_eq!(Version::parse("6.18.44-fc-v769"), Some(Version(6, 18)));
        assert_eq!(Version::parse("garbage"), None);
        assert!(Version(5, 9) < Version(FLOOR.0, FLOOR.1));
        assert!(Version(6, 1) > Version(5, 10));
    }
}
