//! Work split over the machine's cores with scoped threads. There is no
//! pool: a spawn costs tens of microseconds, so only work worth well more
//! than that is split. Every caller splits work whose pieces combine
//! exactly (integer sums, disjoint outputs), so the thread count never
//! changes a result.

use std::sync::OnceLock;

/// Work units (about a nanosecond each) a thread must get at least:
/// starting one costs tens of microseconds, and up to a millisecond on
/// small virtual machines, where waking another core is slow.
const MIN_WORK_PER_THREAD: usize = 1 << 19;

/// Cores this process may use (at most 8: the pieces split here stop
/// gaining past that).
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(8))
}

/// Threads worth using for `work` units, at most `max`.
pub fn threads_for(work: usize, max: usize) -> usize {
    (work / MIN_WORK_PER_THREAD).clamp(1, max.max(1))
}

/// `f` of `parts` contiguous pieces of `items` (in order), each on its own
/// thread (the first on the caller's).
pub fn map_chunks<T: Sync, R: Send>(items: &[T], parts: usize, f: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let parts = parts.clamp(1, items.len().max(1));
    if parts == 1 {
        return vec![f(items)];
    }
    let size = items.len().div_ceil(parts);
    let f = &f;
    std::thread::scope(|scope| {
        let mut pieces = items.chunks(size);
        let first = pieces.next().unwrap_or(&[]);
        let handles: Vec<_> = pieces.map(|piece| scope.spawn(move || f(piece))).collect();
        let mut out = vec![f(first)];
        out.extend(handles.into_iter().map(|h| h.join().expect("a worker thread panicked")));
        out
    })
}

/// `f` of each item, each on its own thread (the first on the caller's).
pub fn for_each<T: Send>(items: Vec<T>, f: impl Fn(T) + Sync) {
    map(items, f);
}

/// `f` of each item (in order), each on its own thread (the first on the
/// caller's).
pub fn map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|scope| {
        let mut items = items.into_iter();
        let Some(first) = items.next() else { return vec![] };
        let handles: Vec<_> = items.map(|item| scope.spawn(move || f(item))).collect();
        let mut out = vec![f(first)];
        out.extend(handles.into_iter().map(|h| h.join().expect("a worker thread panicked")));
        out
    })
}

/// `f(first, piece)` over `parts` contiguous pieces of `items`, each a
/// multiple of `align` items long and starting at item `first`.
pub fn for_chunks_mut<T: Send>(items: &mut [T], parts: usize, align: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let align = align.max(1);
    let units = items.len() / align;
    let parts = parts.clamp(1, units.max(1));
    if parts == 1 {
        f(0, items);
        return;
    }
    let size = units.div_ceil(parts) * align;
    let f = &f;
    std::thread::scope(|scope| {
        let mut pieces = items.chunks_mut(size).enumerate();
        let first = pieces.next();
        for (i, piece) in pieces {
            scope.spawn(move || f(i * size, piece));
        }
        if let Some((_, piece)) = first {
            f(0, piece);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_items_in_order() {
        let items: Vec<u32> = (0..1003).collect();
        for parts in [1, 2, 3, 8] {
            let sums = map_chunks(&items, parts, |c| c.to_vec());
            assert_eq!(sums.concat(), items);
            let mut out = vec![0u32; 1002];
            for_chunks_mut(&mut out, parts, 3, |first, piece| {
                assert_eq!(piece.len() % 3, 0);
                piece.iter_mut().enumerate().for_each(|(i, v)| *v = (first + i) as u32);
            });
            assert_eq!(out, (0..1002).collect::<Vec<u32>>());
        }
    }
}
