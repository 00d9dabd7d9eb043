//! The simulator's `/transactions/sync` cursors. A cursor names a window of an item's
//! change log and a position in the collapsed update list of that window:
//! `base64url("sim1:{from}:{to}:{offset}")`. A *final* cursor (the last page's
//! `next_cursor`) is `from == to`, offset 0: the next sync continues from `to`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// A window `from..to` of the change log, `offset` updates into its collapsed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub from: usize,
    pub to: usize,
    pub offset: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CursorError {
    Invalid,
    /// The item's data changed since the first page of this update.
    Mutation,
}

impl Cursor {
    /// The cursor after the last page of a window: the next sync starts at `to`.
    pub fn end_of(to: usize) -> Cursor {
        Cursor {
            from: to,
            to,
            offset: 0,
        }
    }

    pub fn is_final(&self) -> bool {
        self.offset == 0 && self.from == self.to
    }

    pub fn encode(&self) -> String {
        B64.encode(format!("sim1:{}:{}:{}", self.from, self.to, self.offset))
    }

    pub fn decode(c: &str) -> Result<Cursor, CursorError> {
        let bytes = B64.decode(c).map_err(|_| CursorError::Invalid)?;
        let text = String::from_utf8(bytes).map_err(|_| CursorError::Invalid)?;
        let mut parts = text
            .strip_prefix("sim1:")
            .ok_or(CursorError::Invalid)?
            .split(':');
        let mut next = || -> Result<usize, CursorError> {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or(CursorError::Invalid)
        };
        let cursor = Cursor {
            from: next()?,
            to: next()?,
            offset: next()?,
        };
        if parts.next().is_some() || cursor.from > cursor.to {
            return Err(CursorError::Invalid);
        }
        Ok(cursor)
    }

    /// Where a sync given `cursor` starts, for a log of `head` changes: the whole log for
    /// none, nothing for `"now"`, the rest of the log after a final cursor, and the same
    /// window for a page cursor, which is refused as a mutation once the log has grown
    /// (Plaid's `TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION`).
    pub fn resolve(cursor: Option<&str>, head: usize) -> Result<Cursor, CursorError> {
        let c = match cursor {
            None | Some("") => {
                return Ok(Cursor {
                    from: 0,
                    to: head,
                    offset: 0,
                });
            }
            Some("now") => return Ok(Cursor::end_of(head)),
            Some(c) => Cursor::decode(c)?,
        };
        if c.to > head {
            return Err(CursorError::Invalid);
        }
        if c.is_final() {
            return Ok(Cursor {
                from: c.to,
                to: head,
                offset: 0,
            });
        }
        if c.to != head {
            return Err(CursorError::Mutation);
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for c in [
            Cursor::end_of(0),
            Cursor::end_of(17),
            Cursor {
                from: 3,
                to: 900,
                offset: 500,
            },
        ] {
            assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        }
    }

    #[test]
    fn foreign_and_damaged_cursors_are_invalid() {
        for bad in [
            "x",
            "not base64!",
            &B64.encode("sim2:0:1:0"),
            &B64.encode("sim1:0:1"),
            &B64.encode("sim1:0:1:0:9"),
            &B64.encode("sim1:5:1:0"),
            &B64.encode("sim1:a:1:0"),
        ] {
            assert_eq!(Cursor::decode(bad), Err(CursorError::Invalid), "{bad}");
        }
    }

    #[test]
    fn resolving() {
        let all = |head| Cursor {
            from: 0,
            to: head,
            offset: 0,
        };
        assert_eq!(Cursor::resolve(None, 10), Ok(all(10)));
        assert_eq!(Cursor::resolve(Some(""), 10), Ok(all(10)));
        assert_eq!(Cursor::resolve(Some("now"), 10), Ok(Cursor::end_of(10)));
        // After a final cursor: the changes since.
        let resumed = Cursor::resolve(Some(&Cursor::end_of(4).encode()), 10);
        assert_eq!(
            resumed,
            Ok(Cursor {
                from: 4,
                to: 10,
                offset: 0
            })
        );
        // A page cursor is good while the log has not grown.
        let page = Cursor {
            from: 4,
            to: 10,
            offset: 3,
        };
        assert_eq!(Cursor::resolve(Some(&page.encode()), 10), Ok(page));
        assert_eq!(
            Cursor::resolve(Some(&page.encode()), 11),
            Err(CursorError::Mutation)
        );
        // A cursor from the future is not this item's.
        assert_eq!(
            Cursor::resolve(Some(&Cursor::end_of(11).encode()), 10),
            Err(CursorError::Invalid)
        );
    }
}
