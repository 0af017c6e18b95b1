//! [`chunk_span`]: which chunks a read touches, the one computation every chunked read starts
//! from (the local reads, the lazy remote reads and fetches).

use crate::chunks::CHUNK_SIZE;

/// The chunks a read touches: its bytes `offset .. end` (`end` clipped to the file's length) lie
/// in chunks `first ..= last`, which hold bytes `start .. stop` (`stop` is the file's length when
/// `last` is its last chunk, short as that may be).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSpan {
    pub first: u64,
    pub last: u64,
    pub start: u64,
    pub stop: u64,
    pub end: u64,
}

/// The chunks that bytes `offset .. offset + size` of a file of `length` bytes touch; `None` when
/// the read is empty (`size` 0, or `offset` at or past the end).
pub fn chunk_span(length: u64, offset: u64, size: u32) -> Option<ChunkSpan> {
    if offset >= length || size == 0 {
        return None;
    }
    let cs = u64::from(CHUNK_SIZE);
    let end = offset.saturating_add(u64::from(size)).min(length);
    let (first, last) = (offset / cs, (end - 1) / cs);
    Some(ChunkSpan {
        first,
        last,
        start: first * cs,
        stop: (last + 1).saturating_mul(cs).min(length),
        end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: u64 = CHUNK_SIZE as u64;

    #[test]
    fn an_empty_read_touches_no_chunk() {
        for (length, offset, size) in [
            (0, 0, 1),
            (0, 5, 100),
            (100, 0, 0),
            (100, 50, 0),
            (100, 100, 1),
            (100, 101, 1),
            (3 * CS, 3 * CS, 1),
            (3 * CS, 5 * CS, u32::MAX),
            (u64::MAX, u64::MAX, 1),
        ] {
            assert_eq!(
                chunk_span(length, offset, size),
                None,
                "{length} {offset} {size}"
            );
        }
    }

    #[test]
    fn a_read_touches_the_chunks_it_overlaps_and_the_last_one_is_short() {
        let span = |first, last, start, stop, end| ChunkSpan {
            first,
            last,
            start,
            stop,
            end,
        };
        let short = 3 * CS + 1000;
        for (length, offset, size, want) in [
            // Inside one chunk; a whole chunk; across a boundary by one byte each side.
            (short, 10, 20, span(0, 0, 0, CS, 30)),
            (short, CS, CS as u32, span(1, 1, CS, 2 * CS, 2 * CS)),
            (short, CS - 1, 2, span(0, 1, 0, 2 * CS, CS + 1)),
            // Into the short last chunk, and past the end (clipped).
            (
                short,
                3 * CS + 10,
                50,
                span(3, 3, 3 * CS, short, 3 * CS + 60),
            ),
            (
                short,
                2 * CS + 5,
                u32::MAX,
                span(2, 3, 2 * CS, short, short),
            ),
            (short, short - 1, 1, span(3, 3, 3 * CS, short, short)),
            // A file smaller than a chunk.
            (100, 0, 4096, span(0, 0, 0, 100, 100)),
            (100, 99, 1, span(0, 0, 0, 100, 100)),
            // A length at the end of u64: no overflow.
            (u64::MAX, u64::MAX - 1, 10, {
                let last = (u64::MAX - 1) / CS;
                span(last, last, last * CS, u64::MAX, u64::MAX)
            }),
        ] {
            assert_eq!(
                chunk_span(length, offset, size),
                Some(want),
                "{length} {offset} {size}"
            );
        }
    }

    #[test]
    fn the_span_covers_the_read_with_whole_chunks() {
        let marks = |n: u64| [0, 1, n.saturating_sub(1), n, n + 1, 2 * n + 7];
        for length in [1, 100, CS - 1, CS, CS + 1, 3 * CS + 1000] {
            for offset in marks(CS).into_iter().chain(marks(length)) {
                for size in [
                    1u32,
                    2,
                    100,
                    CS as u32 - 1,
                    CS as u32,
                    3 * CS as u32,
                    u32::MAX,
                ] {
                    let Some(s) = chunk_span(length, offset, size) else {
                        assert!(offset >= length, "{length} {offset} {size}");
                        continue;
                    };
                    let end = (offset + u64::from(size)).min(length);
                    assert_eq!(s.end, end);
                    assert_eq!((s.start, s.first), (s.first * CS, offset / CS));
                    assert!(s.start <= offset && offset < s.end && s.end <= s.stop);
                    assert_eq!(s.stop, ((s.last + 1) * CS).min(length));
                    assert!(s.last * CS < end && end <= (s.last + 1) * CS);
                }
            }
        }
    }
}
