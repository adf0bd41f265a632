//! End-to-end: resume. The 3-master / 2-pool upgrade is stopped at every step
//! boundary (StopFlag) and killed in the middle of every step (its future
//! dropped right after a mutating ARM request), then run again; every re-run
//! converges to the end state of an uninterrupted run, with the invariants
//! checked after every step of both runs.

mod upgrade_e2e;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aksup::kube::{LockOptions, NoEvents, break_lock};
use aksup::report::Event;
use aksup::upgrade::engine::{Error, StopFlag};
use tokio::sync::Semaphore;
use upgrade_e2e::{EndState, TARGET, chain, mutations, start};

const MODEL: &str = "three-masters-two-pools";
const FLAGS: &[&str] = &["--allow-unreplicated-pods"];
/// Simulated clusters running at once.
const PARALLEL: usize = 4;

#[derive(Debug, Clone, Copy)]
enum Interrupt {
    /// StopFlag raised once this many steps finished.
    StopAfter(usize),
    /// The run's future dropped once this many mutating ARM requests were served.
    KillAfterMutation(usize),
}

struct Baseline {
    end: EndState,
    steps: Vec<String>,
    /// Mutating ARM requests served when each step finished.
    mutations_at_step: Vec<usize>,
}

async fn baseline() -> Baseline {
    let h = start(MODEL, |_| {}).await;
    let checker = h.checker();
    let counter = Arc::new(MutationsAtStep {
        world: h.world().clone(),
        inner: checker.clone(),
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let mut engine = h
        .engine(TARGET, FLAGS, counter.clone(), StopFlag::default())
        .await;
    engine
        .run()
        .await
        .unwrap_or_else(|e| panic!("the uninterrupted run: {}", chain(&e)));
    checker.assert_clean();
    let model = h.assert_model_written(TARGET);
    h.assert_upgraded(TARGET, &model, false);
    Baseline {
        end: h.end_state(),
        steps: checker.steps(),
        mutations_at_step: counter.seen.lock().expect("lock").clone(),
    }
}

/// Records the number of mutating ARM requests at each step's end.
struct MutationsAtStep {
    world: aksup::sim::World,
    inner: Arc<upgrade_e2e::Checker>,
    seen: std::sync::Mutex<Vec<usize>>,
}

impl aksup::report::Reporter for MutationsAtStep {
    fn report(&self, event: &Event) {
        if matches!(event, Event::StepFinished { .. }) {
            self.seen.lock().expect("lock").push(mutations(&self.world));
        }
        self.inner.report(event);
    }
}

/// Interrupts one run as told, runs again, and returns what went wrong.
async fn interrupted_then_resumed(interrupt: Interrupt, baseline: Arc<Baseline>) -> Vec<String> {
    let mut problems = Vec::new();
    let h = start(MODEL, |_| {}).await;
    let first = h.checker();
    let stop = StopFlag::default();
    let mut engine = h.engine(TARGET, FLAGS, first.clone(), stop.clone()).await;
    match interrupt {
        Interrupt::StopAfter(k) => {
            if k == 0 {
                stop.request();
            } else {
                first.stop_after(k, stop.clone());
            }
            match engine.run().await {
                Err(Error::Interrupted { steps }) if steps == k => {}
                other => problems.push(format!(
                    "expected a stop after {k} step(s), got {:?}",
                    other.map(|s| s.steps_done).map_err(|e| chain(&e))
                )),
            }
            let hints = Error::Interrupted { steps: k }.hints().join(" ");
            if !hints.contains("resumes") {
                problems.push(format!("no resume hint: {hints}"));
            }
        }
        Interrupt::KillAfterMutation(n) => {
            let world = h.world().clone();
            let killed = tokio::select! {
                result = engine.run() => {
                    problems.push(format!(
                        "the run ended before mutation {n}: {:?}",
                        result.map(|s| s.steps_done).map_err(|e| chain(&e))
                    ));
                    false
                }
                () = async {
                    while mutations(&world) < n {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                } => true,
            };
            drop(engine);
            if killed {
                // A killed process leaves its lease behind; the operator re-runs with --break-lock.
                let client = h.kube_client().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Err(e) = break_lock(&client, &LockOptions::default(), &NoEvents).await {
                    problems.push(format!("break the lock: {}", chain(&e)));
                }
            }
        }
    }
    h.assert_model_unchanged();
    let second = h.checker();
    let mut engine = h
        .engine(TARGET, FLAGS, second.clone(), StopFlag::default())
        .await;
    if let Err(e) = engine.run().await {
        problems.push(format!("the re-run failed: {}", chain(&e)));
    }
    for (run, checker) in [("first", &first), ("second", &second)] {
        for v in checker.violations() {
            problems.push(format!("{run} run: {v}"));
        }
    }
    if problems.is_empty() {
        let end = h.end_state();
        if end != baseline.end {
            problems.push(format!(
                "did not converge:\n  got      {:?}\n  expected {:?}",
                end.vms.keys().collect::<Vec<_>>(),
                baseline.end.vms.keys().collect::<Vec<_>>()
            ));
            for (name, node) in &end.nodes {
                if baseline.end.nodes.get(name) != Some(node) {
                    problems.push(format!(
                        "  node {name}: {node:?} vs {:?}",
                        baseline.end.nodes.get(name)
                    ));
                }
            }
            for (name, vm) in &end.vms {
                if baseline.end.vms.get(name) != Some(vm) {
                    problems.push(format!(
                        "  vm {name}: {vm:?} vs {:?}",
                        baseline.end.vms.get(name)
                    ));
                }
            }
            if end.nics != baseline.end.nics || end.disks != baseline.end.disks {
                problems.push(format!("  nics {:?} disks {:?}", end.nics, end.disks));
            }
        }
        let model = std::panic::catch_unwind(|| h.assert_model_written(TARGET));
        if model.is_err() {
            problems.push("the apimodel was not written back after the re-run".into());
        }
        if let Interrupt::StopAfter(_) = interrupt {
            // A clean stop resumes on exactly the path of the uninterrupted run.
            let mut steps = first.steps();
            steps.extend(second.steps());
            if steps != baseline.steps {
                problems.push(format!("steps {steps:?}\n  expected {:?}", baseline.steps));
            }
        }
    }
    problems
        .into_iter()
        .map(|p| format!("{interrupt:?}: {p}"))
        .collect()
}

async fn run_all(interrupts: Vec<Interrupt>, baseline: Arc<Baseline>) -> Vec<String> {
    let permits = Arc::new(Semaphore::new(PARALLEL));
    let tasks: Vec<_> = interrupts
        .into_iter()
        .map(|interrupt| {
            let permits = permits.clone();
            let baseline = baseline.clone();
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("a permit");
                interrupted_then_resumed(interrupt, baseline).await
            })
        })
        .collect();
    let mut problems = Vec::new();
    for task in tasks {
        problems.extend(
            task.await
                .unwrap_or_else(|e| vec![format!("a scenario panicked: {e}")]),
        );
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_step_boundary_and_mid_step_kill_resumes_to_the_same_end_state() {
    let started = Instant::now();
    let baseline = Arc::new(baseline().await);
    let steps = baseline.steps.len();
    assert_eq!(steps, 13, "{:?}", baseline.steps);
    // Clean stops at every boundary (0 = before the first step).
    let mut interrupts: Vec<Interrupt> = (0..steps).map(Interrupt::StopAfter).collect();
    // A hard kill inside every step, right after its first mutating request:
    // the VM deleted but not its NIC and OS disk (replacements), or the
    // deployment accepted but not finished (creations).
    // Master replacements also get a kill after their last mutating request:
    // the master slot empty while its new deployment runs.
    let mut previous = 0;
    for &at_end in &baseline.mutations_at_step {
        if previous < at_end {
            interrupts.push(Interrupt::KillAfterMutation(previous + 1));
        }
        if at_end >= previous + 4 {
            interrupts.push(Interrupt::KillAfterMutation(at_end));
        }
        previous = at_end;
    }
    // AKSUP_E2E_ONLY=stop:K or kill:N runs one scenario (for debugging);
    // AKSUP_E2E_KILL=N adds a kill after mutating request N.
    if let Ok(n) = std::env::var("AKSUP_E2E_KILL") {
        interrupts.push(Interrupt::KillAfterMutation(n.parse().expect("a number")));
    }
    if let Ok(only) = std::env::var("AKSUP_E2E_ONLY") {
        interrupts.retain(|i| match i {
            Interrupt::StopAfter(k) => only == format!("stop:{k}"),
            Interrupt::KillAfterMutation(n) => only == format!("kill:{n}"),
        });
    }
    let count = interrupts.len();
    let problems = run_all(interrupts, baseline).await;
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Keep the figure visible when the test is run with --nocapture.
    let took = started.elapsed();
    assert!(
        count >= 13 + 13 + 3 || std::env::var_os("AKSUP_E2E_ONLY").is_some(),
        "{count} scenarios"
    );
    if std::env::var_os("AKSUP_E2E_TIMING").is_some() {
        eprintln!("{count} interrupted runs + baseline in {took:?}");
    }
}
