//! The wire contract: golden bytes for every message type, and decoding that
//! never panics on hostile input.

use mass_protocol::{
    Advert, BridgeInfo, BridgeStatus, CpuInfo, GpuAdapter, GpuDeviceType, GpuLimits, HardwareProfile, Load, QueueDepth,
    codec::{self, DecodeError},
    names,
    rpc::{Request, Response, RpcError, RpcErrorKind},
};
use proptest::prelude::*;

fn sample_advert() -> Advert {
    Advert {
        protocol_version: names::PROTOCOL_VERSION,
        seq: 7,
        agent: "mass/0.1.0".into(),
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
        http_addr: Some("127.0.0.1:8080".into()),
        hardware: HardwareProfile {
            cpu: CpuInfo { model: "EPYC".into(), cores: 2 },
            memory_bytes: 1 << 34,
            gemm_gflops: 180.5,
            gpus: vec![GpuAdapter {
                name: "llvmpipe".into(),
                backend: "vulkan".into(),
                device_type: GpuDeviceType::Cpu,
                driver: "mesa".into(),
                limits: GpuLimits {
                    max_buffer_size: 1 << 30,
                    max_storage_buffer_binding_size: 1 << 27,
                    max_compute_workgroup_storage_size: 16384,
                    max_compute_invocations_per_workgroup: 256,
                    max_compute_workgroup_size_x: 256,
                    max_compute_workgroups_per_dimension: 65535,
                },
                gflops: 812.5,
            }],
            bridges: vec![BridgeInfo {
                status: BridgeStatus::Up,
                device: "xcu250".into(),
                precision: "fixed<16,6>".into(),
                rows_per_s: 250_000.0,
                models: 2,
                ..BridgeInfo::declared("fpga0", "fpga", "tcp://10.0.0.9:7000")
            }],
            capacity_gflops: 90.25,
        },
        load: Load {
            free_memory_bytes: 1 << 33,
            cpu_load: 0.25,
            queues: vec![QueueDepth { name: "net".into(), depth: 3 }],
        },
        draining: true,
    }
}

/// Encodes and checks against the pinned hex; a change here is a wire break
/// and needs a new protocol name.
fn assert_golden<T: serde::Serialize>(value: &T, expected_hex: &str) {
    let actual = hex::encode(codec::encode(value).unwrap());
    assert_eq!(actual, expected_hex, "wire bytes changed");
}

#[test]
fn golden_request_get_advert() {
    assert_golden(&Request::GetAdvert, "00");
}

#[test]
fn golden_request_get_ref() {
    // Variant 13, then the name's length and bytes.
    assert_golden(&Request::GetRef { name: "model/a".into() }, "0d076d6f64656c2f61");
}

#[test]
fn golden_request_get_blob_kind() {
    // Variant 15, then the id's 32 raw bytes.
    let id = mass_protocol::ContentId::of(b"x");
    assert_golden(&Request::GetBlobKind { id }, &format!("0f{}", hex::encode(id.as_bytes())));
}

#[test]
fn golden_response_blob_kind() {
    // Variant 13, Some, then the kind's variant (Dataset is 1).
    let kind = mass_protocol::storage::BlobKind::Dataset;
    assert_golden(&Response::BlobKind(Some(kind)), "0d0101");
    assert_golden(&Response::BlobKind(None), "0d00");
}

#[test]
fn golden_response_error() {
    let response = Response::Error(RpcError { kind: RpcErrorKind::Unavailable, message: "starting".into() });
    assert_golden(&response, GOLDEN_RESPONSE_ERROR);
}

#[test]
fn golden_advert() {
    assert_golden(&sample_advert(), GOLDEN_ADVERT);
}

#[test]
fn golden_response_advert() {
    let hex = format!("00{GOLDEN_ADVERT}");
    assert_golden(&Response::Advert(Box::new(sample_advert())), &hex);
}

const GOLDEN_RESPONSE_ERROR: &str = "0100087374617274696e67";
const GOLDEN_ADVERT: &str = concat!(
    "05070a6d6173732f302e312e3001172f6970342f3132372e302e302e312f7463702f34303031010e3132372e302e30",
    "2e313a38303830044550594302fd00000000040000000080344301086c6c766d706970650676756c6b616e04046d65",
    "7361fc00000040fc00000008fb0040fb0001fb0001fbffff00204b44010566706761300466706761137463703a2f2f",
    "31302e302e302e393a3730303001067863753235300b66697865643c31362c363e00247448020080b442fd00000000",
    "020000000000803e01036e65740301",
);

#[test]
fn every_truncation_of_a_valid_advert_is_refused() {
    let bytes = codec::encode(&sample_advert()).unwrap();
    for len in 0..bytes.len() {
        assert!(
            codec::decode::<Advert>(&bytes[..len], codec::MAX_GOSSIP_MESSAGE).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn oversized_advert_is_refused() {
    let mut advert = sample_advert();
    advert.agent = "x".repeat(codec::MAX_GOSSIP_MESSAGE);
    let bytes = codec::encode(&advert).unwrap();
    assert!(matches!(codec::decode::<Advert>(&bytes, codec::MAX_GOSSIP_MESSAGE), Err(DecodeError::Oversized { .. })));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = codec::decode::<Advert>(&bytes, codec::MAX_GOSSIP_MESSAGE);
        let _ = codec::decode::<Request>(&bytes, codec::MAX_RPC_MESSAGE);
        let _ = codec::decode::<Response>(&bytes, codec::MAX_RPC_MESSAGE);
    }

    #[test]
    fn corrupted_adverts_never_panic(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = codec::encode(&sample_advert()).unwrap();
        for (index, value) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= value;
        }
        let _ = codec::decode::<Advert>(&bytes, codec::MAX_GOSSIP_MESSAGE);
    }

    #[test]
    fn adverts_round_trip(seq in any::<u64>(), cores in 1u32..1024, gflops in 0.0f32..1e6, agent in ".{0,40}", depth in any::<u32>()) {
        let mut advert = sample_advert();
        advert.seq = seq;
        advert.hardware.cpu.cores = cores;
        advert.hardware.gemm_gflops = gflops;
        advert.agent = agent;
        advert.load.queues[0].depth = depth;
        let bytes = codec::encode(&advert).unwrap();
        prop_assert_eq!(codec::decode::<Advert>(&bytes, codec::MAX_GOSSIP_MESSAGE).unwrap(), advert);
    }
}

/// Issue 11: the backend that trained a task, appended to the task record
/// with a serde default: JSON written before it existed still reads (with
/// no backend), and the field goes last in bincode.
#[test]
fn task_records_name_their_backend_and_older_json_still_reads() {
    use mass_protocol::jobs::TaskRecord;
    let mut record = TaskRecord::new(vec![], 7);
    record.backend = "wgpu:llvmpipe".into();
    let mut json = serde_json::to_value(&record).unwrap();
    assert_eq!(json["backend"], "wgpu:llvmpipe");
    json.as_object_mut().unwrap().remove("backend");
    let old: TaskRecord = serde_json::from_value(json).unwrap();
    assert_eq!(old.backend, "");
    let bytes = codec::encode(&record).unwrap();
    assert!(bytes.ends_with(b"\x0dwgpu:llvmpipe"), "{}", hex::encode(&bytes));
}

#[test]
fn trained_answers_carry_the_backend_last() {
    let trained = Response::Trained {
        weights: mass_protocol::ContentId::of(b"w"),
        rows: 3,
        curve: vec![],
        backend: "cpu".into(),
    };
    let bytes = codec::encode(&trained).unwrap();
    assert!(bytes.ends_with(b"\x03\x00\x03cpu"), "{}", hex::encode(&bytes));
    let back: Response = codec::decode(&bytes, codec::MAX_RPC_MESSAGE).unwrap();
    assert_eq!(back, trained);
}
