//! The node's side against the reference bridge in the same process:
//! every call of the protocol, a link's probe and placement, and the
//! fallback to the CPU when the bridge dies or never answers.

use std::{
    net::TcpListener,
    sync::Arc,
    time::{Duration, Instant},
};

use mass_kernels::models::{Loss, Member, Mlp, MlpConfig, Optimizer, mlp::Activation as Hidden};
use mass_protocol::{BridgeStatus, ContentId};
use ndarray::Array2;
use rand::{SeedableRng, rngs::StdRng};

use super::{
    Route, Settings, Slot,
    client::{BridgeError, Client},
    fixed::{Numerics, Rounding},
    link::{Link, PlaceError},
    plan, server, wire,
};

const LIMIT: Duration = Duration::from_secs(5);

/// A reference bridge on 127.0.0.1, stopped by the handle.
fn start(options: server::Options) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = server::serve(listener, options).unwrap();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("tcp://{addr}"), handle)
}

fn options(format: &str) -> server::Options {
    let mut options = server::Options::new(Numerics::new(format.parse().unwrap(), Rounding::HalfEven, 48).unwrap());
    options.max_batch = 64;
    options.max_parameters = 20_000;
    options
}

fn network(inputs: usize, hidden: Vec<usize>, outputs: usize, seed: u64) -> Mlp {
    let config = MlpConfig {
        hidden,
        activation: Hidden::Relu,
        loss: Loss::SoftmaxCrossEntropy,
        optimizer: Optimizer::Adam { learning_rate: 1e-3 },
        ..Default::default()
    };
    Mlp::new(inputs, outputs, &config, &mut StdRng::seed_from_u64(seed))
}

fn rows(n: usize, features: usize) -> Array2<f32> {
    Array2::from_shape_fn((n, features), |(r, c)| ((r * 7 + c * 3) % 11) as f32 / 5.0 - 1.0)
}

fn settings(endpoint: &str, route: Route, timeout: Duration) -> Settings {
    Settings { name: "fpga0".into(), kind: "fpga".into(), endpoint: endpoint.into(), route, timeout, max_drift: 0.02 }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_and_the_reference_bridge_agree_on_every_call() {
    let (endpoint, handle) = start(options("fixed<16,6>"));
    let client = Client::new(&endpoint).unwrap();
    let metadata = client.metadata(LIMIT).await.unwrap();
    assert!(metadata.extensions.contains(&wire::EXTENSION.to_owned()));
    let caps = client.capabilities(LIMIT).await.unwrap();
    assert_eq!((caps.precision.format.as_str(), caps.max_batch), ("fixed<16,6>", 64));
    assert_eq!(client.health(LIMIT).await.unwrap().status, wire::HealthStatus::Ok);

    let mlp = network(5, vec![8], 3, 1);
    client.load("m", &plan::describe(&mlp), LIMIT).await.unwrap();
    let x = rows(10, 5);
    let (width, data) = client.infer("m", 10, 5, x.iter().copied().collect(), LIMIT).await.unwrap();
    assert_eq!((width, data.len()), (3, 30));
    let float = mlp.predict(x.view());
    for (a, b) in float.iter().zip(&data) {
        assert!((a - b).abs() < 5e-3, "{a} vs {b}");
    }
    let stats = client.stats("m", LIMIT).await.unwrap();
    assert_eq!((stats.model_stats[0].inference_count, stats.model_stats[0].execution_count), (10, 1));

    // Refusals, each with its status and a sentence.
    let refused = |e: BridgeError| (e.status().unwrap(), e.to_string());
    let (status, message) = refused(client.infer("m", 65, 5, vec![0.0; 325], LIMIT).await.unwrap_err());
    assert_eq!(status, 413);
    assert!(message.contains("a batch of 65 rows is over this device's largest batch, 64"), "{message}");
    let (status, message) = refused(client.infer("m", 1, 4, vec![0.0; 4], LIMIT).await.unwrap_err());
    assert!(status == 400 && message.contains("reads rows of 5 features; got 1 rows of 4"), "{message}");
    let (status, message) = refused(client.infer("nope", 1, 5, vec![0.0; 5], LIMIT).await.unwrap_err());
    assert!(status == 404 && message.contains("no model named 'nope'"), "{message}");
    let big = plan::describe(&network(50, vec![400], 3, 1));
    let (status, message) = refused(client.load("big", &big, LIMIT).await.unwrap_err());
    assert!(status == 413 && message.contains("21603 parameters; this device holds 20000"), "{message}");
    let mut broken = plan::describe(&mlp);
    broken.layers[1].inputs = 9;
    let (status, message) = refused(client.load("broken", &broken, LIMIT).await.unwrap_err());
    assert!(status == 400 && message.contains("layer 1 reads 9 values but layer 0 gives 8"), "{message}");
    client.unload("m", LIMIT).await.unwrap();
    assert_eq!(client.unload("m", LIMIT).await.unwrap_err().status(), Some(404));
    handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_deadline_is_a_504_never_a_late_answer() {
    let mut slow = options("fixed<16,6>");
    slow.delay = Duration::from_millis(500);
    let (endpoint, handle) = start(slow);
    let client = Client::new(&endpoint).unwrap();
    client.load("m", &plan::describe(&network(5, vec![], 3, 1)), LIMIT).await.unwrap();
    let started = Instant::now();
    let err = client.infer("m", 1, 5, vec![0.0; 5], Duration::from_millis(100)).await.unwrap_err();
    assert_eq!(err.status(), Some(504), "{err}");
    assert!(err.to_string().contains("deadline of 100 ms passed"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(400), "answered after {:?}", started.elapsed());
    handle.stop(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_placed_model_runs_on_the_bridge_and_on_the_cpu_once_the_bridge_dies() {
    let (endpoint, handle) = start(options("fixed<16,6>"));
    let link = Arc::new(
        Link::new(settings(&endpoint, Route::Always, Duration::from_secs(2)), tokio::runtime::Handle::current())
            .unwrap(),
    );
    assert_eq!(link.info().status, BridgeStatus::Unprobed);
    link.probe().await.unwrap();
    let info = link.info();
    assert_eq!((info.status, info.precision.as_str()), (BridgeStatus::Up, "fixed<16,6>"));
    assert!(info.rows_per_s > 0.0);

    let members = vec![network(5, vec![8], 3, 1), network(5, vec![], 3, 2)];
    let id = ContentId::of(b"version");
    let sample = Arc::new(rows(100, 5));
    let placement = link.place(id, "'m'", members.clone(), true, sample).await.unwrap();
    assert_eq!(placement.names, [plan::model_name(&id, 0), plan::model_name(&id, 1)]);
    assert_eq!(link.info().models, 1);
    let slot = Arc::new(Slot::default());
    slot.set(placement);

    let members: Vec<Member> = members.into_iter().map(Member::Mlp).collect();
    let x = rows(130, 5); // over the device's batch: sent in three requests
    let cpu: Vec<Array2<f32>> = members.iter().map(|m| m.predict(x.view())).collect();
    let run = |slot: Arc<Slot>, members: Vec<Member>, x: Array2<f32>| {
        tokio::task::spawn_blocking(move || slot.predict(&members, x.view()))
    };
    let on_bridge = run(slot.clone(), members.clone(), x.clone()).await.unwrap();
    for (a, b) in cpu.iter().zip(&on_bridge) {
        assert_ne!(a, b, "fixed point differs from float somewhere");
        assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() < 0.02));
    }

    handle.stop(false).await;
    let fallback = run(slot.clone(), members.clone(), x.clone()).await.unwrap();
    assert_eq!(fallback, cpu, "the CPU answered");
    assert!(!link.allows());
    assert_eq!(link.info().status, BridgeStatus::Down);
    assert!(link.probe().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bridge_that_never_answers_costs_a_batch_its_timeout_and_nothing_more() {
    // Accepts connections (the kernel does) and never reads: a frozen host.
    let frozen = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", frozen.local_addr().unwrap());
    let link =
        Link::new(settings(&endpoint, Route::Always, Duration::from_millis(150)), tokio::runtime::Handle::current())
            .unwrap();
    let started = Instant::now();
    let err = tokio::task::spawn_blocking(move || link.infer_blocking(&["m".into()], 3, rows(4, 5).view()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, BridgeError::Timeout { .. }), "{err}");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_millis(400), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_that_drifts_too_far_is_refused_with_a_sentence_and_unloaded() {
    // Four fractional bits: steps of 1/16 in every weight and activation.
    let (endpoint, handle) = start(options("fixed<8,4>"));
    let link = Arc::new(
        Link::new(settings(&endpoint, Route::Always, Duration::from_secs(2)), tokio::runtime::Handle::current())
            .unwrap(),
    );
    link.probe().await.unwrap();
    let id = ContentId::of(b"coarse");
    let err = match link.place(id, "'digits' (abc)", vec![network(5, vec![8], 3, 1)], true, Arc::new(rows(64, 5))).await
    {
        Ok(_) => panic!("a coarse device took the model"),
        Err(e) => {
            assert!(matches!(e, PlaceError::Drift(_)), "{e:?}");
            e.to_string()
        }
    };
    assert!(
        err.starts_with("model 'digits' (abc) is refused for bridge 'fpga0': in fixed<8,4> its outputs drift up to 0."),
        "{err}"
    );
    assert!(err.contains("past the limit of 0.02 (hardware.bridges.max_drift); it stays on the CPU"), "{err}");
    assert_eq!(link.info().models, 0);
    let client = Client::new(&endpoint).unwrap();
    assert_eq!(client.stats(&plan::model_name(&id, 0), LIMIT).await.unwrap_err().status(), Some(404), "unloaded");

    // Slower than the CPU (it is an emulation over HTTP): when_faster keeps it off.
    let fine = Arc::new(
        Link::new(settings(&endpoint, Route::WhenFaster, Duration::from_secs(2)), tokio::runtime::Handle::current())
            .unwrap(),
    );
    fine.probe().await.unwrap();
    let linear =
        Mlp { weights: vec![Array2::eye(5)], biases: vec![ndarray::Array1::zeros(5)], ..network(5, vec![], 5, 1) };
    // Values on the device's grid, so nothing drifts and only speed decides.
    let exact = rows(64, 5).mapv(|v| (v * 4.0).round() / 16.0);
    let err = match fine.place(id, "'m'", vec![linear], true, Arc::new(exact)).await {
        Ok(_) => panic!("an emulation over HTTP beat ndarray"),
        Err(e) => {
            assert!(matches!(e, PlaceError::Slower { .. }), "{e:?}");
            e.to_string()
        }
    };
    assert!(err.contains("the bridge ran it at") && err.contains("rows/s and the CPU at"), "{err}");
    handle.stop(false).await;
}
