//! How [`super::fit`] keeps the cores busy. One output (regression, two
//! classes): the rows are split into parts, one per core, each held by its
//! own thread for the whole fit and driven the way the node drives the
//! shards' homes: every part builds its rows' histogram of a leaf, the
//! driver merges them (exact integer sums), finds the split and tells the
//! parts to split their rows. The trees are the ones one part holding every
//! row would grow. Many outputs (a tree per class and round): the round's
//! trees grow at once, one per core at a time.
//!
//! Why threads that live for the whole fit: a leaf's histogram takes tens
//! of microseconds to a few milliseconds, and starting a thread (or waking
//! a sleeping one on another core) costs about as much on small virtual
//! machines. A waiting part spins for a while before it sleeps, so the
//! next order reaches it at once.

use std::{
    sync::{
        Arc, Mutex,
        mpsc::{self, Receiver, Sender, TryRecvError},
    },
    time::{Duration, Instant},
};

use super::{
    BoostSetup, Children, Evaluated, LeafRows, Rows,
    bins::BinnedRows,
    find_best, grow,
    histogram::{BinSum, Histogram, Layout},
    objective::Targets,
    par,
    rows::{RowState, TreeRows},
    split::Candidate,
    tree::{SplitOrder, Tree},
};

/// Rounds of a fit, on parts or on trees at once.
pub(super) enum Engine<'scope, 'env, 's> {
    Parts(Team<'scope, 'env, 's>),
    Trees(Trees<'s>),
}

/// How a fit uses threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// The rows in this many parts, a thread each.
    Parts(usize),
    /// A round's trees at once, on this many threads.
    Trees(usize),
}

impl Plan {
    /// The plan for `setup` on `rows` training rows and this machine's cores.
    pub fn for_machine(setup: &BoostSetup, rows: usize) -> Self {
        let cores = par::cores();
        if cores > 1 && setup.objective.scores_per_row() >= 2 * cores {
            Plan::Trees(cores)
        } else {
            Plan::Parts(cores.min(rows / MIN_ROWS_PER_PART).max(1))
        }
    }
}

impl<'scope, 'env, 's: 'scope> Engine<'scope, 'env, 's> {
    /// The engine carrying out `plan`.
    pub fn new(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        setup: &'s BoostSetup,
        layout: &'s Layout,
        (train, validation): (Rows, Option<Rows>),
        plan: Plan,
    ) -> Self {
        match plan {
            Plan::Trees(threads) => {
                let state = |rows: Rows| {
                    let mut state =
                        RowState::new(rows.binned, rows.targets, rows.global_rows, setup.objective, &setup.init);
                    state.set_threads(threads);
                    state
                };
                Engine::Trees(Trees { setup, layout, threads, train: state(train), held: validation.map(state) })
            }
            Plan::Parts(count) => {
                Engine::Parts(Team::start(scope, setup, layout, parts(setup, train, validation, count)))
            }
        }
    }

    pub fn start_round(&mut self, round: u64) {
        match self {
            Engine::Parts(team) => team.start_round(round),
            Engine::Trees(trees) => trees.start_round(round),
        }
    }

    /// Every output's tree of round `round`.
    pub fn grow_round(&mut self, round: usize) -> Vec<Tree> {
        match self {
            Engine::Parts(team) => {
                let (setup, layout) = team.setup();
                (0..setup.objective.scores_per_row())
                    .map(|k| grow(setup, &mut team.tree(k), layout, round, k))
                    .collect()
            }
            Engine::Trees(trees) => trees.grow_round(round),
        }
    }

    /// Adds the round's trees to the scores; the rows' losses.
    pub fn finish(&mut self, trees: &[Tree]) -> Losses {
        match self {
            Engine::Parts(team) => team.finish(trees),
            Engine::Trees(engine) => engine.finish(trees),
        }
    }
}

/// All rows in one state; a round's trees grow at once.
pub(super) struct Trees<'s> {
    setup: &'s BoostSetup,
    layout: &'s Layout,
    threads: usize,
    train: RowState,
    held: Option<RowState>,
}

impl Trees<'_> {
    fn start_round(&mut self, round: u64) {
        let params = &self.setup.params;
        self.train.start_round(&self.setup.quantizer, params.seed, round, params.row_fraction);
    }

    fn grow_round(&mut self, round: usize) -> Vec<Tree> {
        let (setup, layout) = (self.setup, self.layout);
        let rows = self.train.tree_rows();
        let threads = self.threads.min(rows.len()).max(1);
        // Each thread takes the next output's tree as it finishes one:
        // trees differ in work, and which thread grows a tree does not
        // change it.
        let queue = Mutex::new(rows.into_iter().enumerate());
        let next = || queue.lock().ok().and_then(|mut q| q.next());
        let grown = par::map((0..threads).collect(), |_| {
            let mut out = Vec::new();
            while let Some((k, mut rows)) = next() {
                let mut leaves = OneTree { rows: &mut rows, layout, features: vec![] };
                out.push((k, grow(setup, &mut leaves, layout, round, k)));
            }
            out
        });
        let mut trees: Vec<(usize, Tree)> = grown.into_iter().flatten().collect();
        trees.sort_by_key(|(k, _)| *k);
        trees.into_iter().map(|(_, t)| t).collect()
    }

    fn finish(&mut self, trees: &[Tree]) -> Losses {
        for (k, tree) in trees.iter().enumerate() {
            self.train.apply(tree, k);
            if let Some(held) = &mut self.held {
                held.apply(tree, k);
            }
        }
        Losses {
            train: vec![self.train.losses_for_next_round()],
            held: self.held.as_ref().map(RowState::losses).into_iter().collect(),
        }
    }
}

/// One output's tree on its [`TreeRows`].
struct OneTree<'a, 'b> {
    rows: &'a mut TreeRows<'b>,
    layout: &'a Layout,
    features: Vec<usize>,
}

impl LeafRows for OneTree<'_, '_> {
    fn start(&mut self, features: &[usize]) -> BinSum {
        self.features = features.to_vec();
        self.rows.start_tree()
    }

    fn split(&mut self, order: &SplitOrder) {
        self.rows.split(order);
    }

    fn histogram(&mut self, node: u32) -> Histogram {
        self.rows.histogram(node, &self.features, self.layout)
    }
}

/// Rows a part holds at least: below this, the orders cost more than the
/// histograms they split.
const MIN_ROWS_PER_PART: usize = 8192;

/// How long a waiting thread spins before it sleeps: longer than the
/// driver's work between two orders (finding splits), shorter than anything
/// a person would notice on a busy machine.
const SPIN: Duration = Duration::from_millis(2);

/// How long of that it spins without yielding the core.
const SPIN_ALONE: Duration = Duration::from_micros(50);

/// Training and validation rows of one part.
pub(super) struct Part {
    train: RowState,
    held: Option<RowState>,
}

/// Splits the rows into `count` contiguous parts, in row order.
fn parts(setup: &BoostSetup, train: Rows, validation: Option<Rows>, count: usize) -> Vec<Part> {
    let count = count.max(1);
    let state = |rows: Rows| {
        let mut state = RowState::new(rows.binned, rows.targets, rows.global_rows, setup.objective, &setup.init);
        if count > 1 {
            // The parts are the threads.
            state.set_threads(1);
        }
        state
    };
    let train = split_rows(train, count);
    let held: Vec<Option<Rows>> = match validation {
        Some(v) => split_rows(v, count).into_iter().map(Some).collect(),
        None => (0..count).map(|_| None).collect(),
    };
    train.into_iter().zip(held).map(|(t, h)| Part { train: state(t), held: h.map(state) }).collect()
}

/// `rows` in `count` contiguous parts of about equal size.
fn split_rows(rows: Rows, count: usize) -> Vec<Rows> {
    if count <= 1 {
        return vec![rows];
    }
    let n = rows.binned.rows;
    (0..count)
        .map(|p| {
            let range = p * n / count..(p + 1) * n / count;
            Rows {
                binned: BinnedRows {
                    rows: range.len(),
                    columns: rows.binned.columns.iter().map(|c| c[range.clone()].to_vec()).collect(),
                },
                targets: match &rows.targets {
                    Targets::Classes(c) => Targets::Classes(c[range.clone()].to_vec()),
                    Targets::Values(v) => Targets::Values(v[range.clone()].to_vec()),
                },
                global_rows: rows.global_rows[range].to_vec(),
            }
        })
        .collect()
}

enum Command {
    /// Gradients and sample of a round.
    StartRound { round: u64 },
    /// Start output `output`'s tree on `features`; answers the root's sums.
    StartTree { output: usize, features: Vec<usize> },
    /// Split a leaf's rows (no answer).
    Split { output: usize, order: SplitOrder },
    /// Answers the histogram of a leaf.
    Histogram { output: usize, node: u32 },
    /// Add the round's trees to the scores; answers each row's losses.
    Finish { trees: Vec<Tree> },
    /// Take `small` from `parent` (a leaf's merged histograms) and find
    /// the best split of the rest, a leaf with sums `total`; answers both.
    Large { output: usize, parent: Histogram, small: Arc<Histogram>, total: BinSum },
    /// Give the part back and end the thread.
    HandOver,
}

enum Reply<'s> {
    Sum(BinSum),
    Histogram(Histogram),
    Losses { train: Vec<f64>, held: Option<Vec<f64>> },
    Large { hist: Histogram, best: Option<Candidate> },
    Worker(Box<Worker<'s>>),
}

/// A part and what it needs to carry out orders.
struct Worker<'s> {
    part: Part,
    setup: &'s BoostSetup,
    layout: &'s Layout,
    /// The features of each output's current tree.
    features: Vec<Vec<usize>>,
}

impl<'s> Worker<'s> {
    fn handle(&mut self, command: Command) -> Option<Reply<'s>> {
        let train = &mut self.part.train;
        match command {
            Command::StartRound { round } => {
                let params = &self.setup.params;
                train.start_round(&self.setup.quantizer, params.seed, round, params.row_fraction);
                None
            }
            Command::StartTree { output, features } => {
                if self.features.len() <= output {
                    self.features.resize_with(output + 1, Vec::new);
                }
                self.features[output] = features;
                train.start_tree(output);
                Some(Reply::Sum(train.sum(output, 0)))
            }
            Command::Split { output, order } => {
                train.split(output, &order);
                None
            }
            Command::Histogram { output, node } => {
                let features = self.features.get(output).map_or(&[][..], |f| f.as_slice());
                Some(Reply::Histogram(train.histogram(output, node, features, self.layout)))
            }
            Command::Large { output, mut parent, small, total } => {
                parent.remove(&small);
                // Dropped before answering, so the sender holds the only one.
                drop(small);
                let features = self.features.get(output).map_or(&[][..], |f| f.as_slice());
                let best = find_best(self.setup, self.layout, features, &parent, total);
                Some(Reply::Large { hist: parent, best })
            }
            Command::Finish { trees } => {
                for (k, tree) in trees.iter().enumerate() {
                    train.apply(tree, k);
                    if let Some(held) = &mut self.part.held {
                        held.apply(tree, k);
                    }
                }
                let held = self.part.held.as_ref().map(RowState::losses);
                Some(Reply::Losses { train: train.losses_for_next_round(), held })
            }
            // Answered by the thread's loop, which gives the whole worker.
            Command::HandOver => None,
        }
    }

    /// Carries out orders on this thread until told to hand the part over
    /// (or the driver is gone).
    fn serve(mut self, from: Receiver<Command>, to: Sender<Reply<'s>>) {
        while let Some(command) = receive(&from) {
            if let Command::HandOver = command {
                let _ = to.send(Reply::Worker(Box::new(self)));
                return;
            }
            if let Some(reply) = self.handle(command)
                && to.send(reply).is_err()
            {
                return;
            }
        }
    }
}

/// Waits for the next message: spinning first, then yielding the core to
/// any other thread that wants it (on a busy machine the sender may be
/// waiting for this very core), then sleeping. `None` once the other side
/// is gone.
fn receive<T>(from: &Receiver<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        match from.try_recv() {
            Ok(message) => return Some(message),
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {
                let waited = start.elapsed();
                if waited > SPIN {
                    return from.recv().ok();
                } else if waited > SPIN_ALONE {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// A part on its own thread.
struct Remote<'s> {
    index: usize,
    to: Sender<Command>,
    from: Receiver<Reply<'s>>,
}

/// The driver's side: the parts it works on itself (the first always, all
/// of them when the machine is too busy for the others' threads to keep
/// up), and the parts on their own threads.
pub(super) struct Team<'scope, 'env, 's> {
    scope: &'scope std::thread::Scope<'scope, 'env>,
    /// `(part number, worker)`, in part order.
    local: Vec<(usize, Worker<'s>)>,
    remote: Vec<Remote<'s>>,
    /// This round's time working on local parts, and waiting for remote ones.
    worked: Duration,
    waited: Duration,
    /// Rounds since the parts all came to this thread.
    alone: usize,
}

/// Rounds a team works alone after the machine was too busy, before it
/// tries other threads again.
const ALONE_ROUNDS: usize = 16;

/// Each part's losses, in row order.
pub(super) struct Losses {
    pub train: Vec<Vec<f64>>,
    pub held: Vec<Vec<f64>>,
}

impl<'scope, 'env, 's: 'scope> Team<'scope, 'env, 's> {
    /// Starts a thread for every part but the first (the caller's).
    pub fn start(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        setup: &'s BoostSetup,
        layout: &'s Layout,
        parts: Vec<Part>,
    ) -> Self {
        let local =
            parts.into_iter().map(|part| Worker { part, setup, layout, features: vec![] }).enumerate().collect();
        let mut team = Team { scope, local, remote: vec![], worked: Duration::ZERO, waited: Duration::ZERO, alone: 0 };
        team.spread();
        team
    }

    /// Every part but the first onto a thread of its own.
    fn spread(&mut self) {
        let scope = self.scope;
        for (index, worker) in self.local.drain(1..) {
            let (to, commands) = mpsc::channel();
            let (replies, from) = mpsc::channel();
            scope.spawn(move || worker.serve(commands, replies));
            self.remote.push(Remote { index, to, from });
        }
        self.alone = 0;
    }

    /// Every part back on this thread.
    fn gather(&mut self) {
        for remote in std::mem::take(&mut self.remote) {
            remote.to.send(Command::HandOver).expect("a training thread stopped");
            loop {
                match receive(&remote.from) {
                    Some(Reply::Worker(worker)) => break self.local.push((remote.index, *worker)),
                    Some(_) => {}
                    None => panic!("a training thread stopped"),
                }
            }
        }
        self.local.sort_by_key(|(index, _)| *index);
    }

    /// After a round: works alone when this thread waited longer for the
    /// others than it worked (their cores are busy with other programs,
    /// and every order waits for a core), and tries them again later.
    fn adapt(&mut self) {
        // Tests switch every round: the trees must not depend on it.
        let busy = cfg!(test) || self.waited > self.worked;
        let alone_rounds = if cfg!(test) { 1 } else { ALONE_ROUNDS };
        if !self.remote.is_empty() && busy {
            self.gather();
        } else if self.remote.is_empty() && self.local.len() > 1 {
            self.alone += 1;
            if self.alone >= alone_rounds {
                self.spread();
            }
        }
        (self.worked, self.waited) = (Duration::ZERO, Duration::ZERO);
    }

    /// Gives every part `command` (the remote ones first, so they work
    /// while this thread does its parts), then collects the answers in part
    /// order.
    fn all(&mut self, command: impl Fn() -> Command) -> Vec<Reply<'s>> {
        for remote in &self.remote {
            remote.to.send(command()).expect("a training thread stopped");
        }
        let start = Instant::now();
        let mut replies: Vec<(usize, Reply<'s>)> =
            self.local.iter_mut().filter_map(|(index, worker)| worker.handle(command()).map(|r| (*index, r))).collect();
        let worked = start.elapsed();
        self.worked += worked;
        if replies.is_empty() {
            return vec![];
        }
        for remote in &self.remote {
            replies.push((remote.index, receive(&remote.from).expect("a training thread stopped")));
        }
        self.waited += start.elapsed() - worked;
        replies.sort_by_key(|(index, _)| *index);
        replies.into_iter().map(|(_, reply)| reply).collect()
    }

    /// Starts round `round`: gradients and sample in every part.
    pub fn start_round(&mut self, round: u64) {
        self.all(|| Command::StartRound { round });
    }

    /// The rows of output `output`'s tree, across the parts.
    pub fn tree(&mut self, output: usize) -> TeamTree<'_, 'scope, 'env, 's> {
        TeamTree { team: self, output }
    }

    /// Adds the round's trees to every part's scores; each part's losses.
    pub fn finish(&mut self, trees: &[Tree]) -> Losses {
        let mut losses = Losses { train: vec![], held: vec![] };
        for reply in self.all(|| Command::Finish { trees: trees.to_vec() }) {
            if let Reply::Losses { train, held } = reply {
                losses.train.push(train);
                losses.held.extend(held);
            }
        }
        self.adapt();
        losses
    }

    fn setup(&self) -> (&'s BoostSetup, &'s Layout) {
        let worker = &self.local[0].1;
        (worker.setup, worker.layout)
    }
}

/// One output's tree across a team's parts.
pub(super) struct TeamTree<'t, 'scope, 'env, 's> {
    team: &'t mut Team<'scope, 'env, 's>,
    output: usize,
}

impl<'scope, 'env, 's: 'scope> LeafRows for TeamTree<'_, 'scope, 'env, 's> {
    fn start(&mut self, features: &[usize]) -> BinSum {
        let output = self.output;
        let replies = self.team.all(|| Command::StartTree { output, features: features.to_vec() });
        replies.into_iter().fold(BinSum::default(), |mut total, reply| {
            if let Reply::Sum(sum) = reply {
                total += sum;
            }
            total
        })
    }

    fn split(&mut self, order: &SplitOrder) {
        let (output, order) = (self.output, *order);
        self.team.all(|| Command::Split { output, order });
    }

    /// The larger child on another part's thread while this one finds the
    /// smaller child's split.
    fn children(&mut self, children: Children, setup: &BoostSetup, layout: &Layout, features: &[usize]) -> Evaluated {
        let (Some(remote), Some(small_total), Some(total)) =
            (self.team.remote.first(), children.small_total, children.large_total)
        else {
            return children.evaluate(setup, layout, features);
        };
        let small = Arc::new(children.small);
        let (output, parent) = (self.output, children.parent);
        remote
            .to
            .send(Command::Large { output, parent, small: Arc::clone(&small), total })
            .expect("a training thread stopped");
        let start = Instant::now();
        let small_best = find_best(setup, layout, features, &small, small_total);
        let worked = start.elapsed();
        let Some(Reply::Large { hist: large, best: large_best }) = receive(&remote.from) else {
            panic!("a training thread stopped");
        };
        self.team.worked += worked;
        self.team.waited += start.elapsed() - worked;
        let small = Arc::try_unwrap(small).unwrap_or_else(|shared| (*shared).clone());
        Evaluated { small, large, small_best, large_best }
    }

    fn histogram(&mut self, node: u32) -> Histogram {
        let output = self.output;
        let mut parts = self.team.all(|| Command::Histogram { output, node }).into_iter().filter_map(|r| match r {
            Reply::Histogram(h) => Some(h),
            _ => None,
        });
        let mut whole = parts.next().expect("every part answers");
        for part in parts {
            whole.merge(&part);
        }
        whole
    }
}
