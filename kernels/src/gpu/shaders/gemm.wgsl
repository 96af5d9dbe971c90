// C (m x n) = op(A) op(B), or C += op(A) op(B).
//
// Each workgroup computes a 64 x 64 tile of C. The k dimension is walked in
// steps of 16: the 64 x 16 slice of op(A) and the 16 x 64 slice of op(B) are
// staged in workgroup memory (each element read once from global memory per
// tile instead of 64 times), then each of the 256 invocations accumulates a
// 4 x 4 block of outputs from it. Rows and columns of an invocation's block
// are 16 apart so that neighbouring invocations read neighbouring words.
// Transposes are read in place: the loads pick the index order, and map
// consecutive invocations to consecutive addresses in either layout.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // bit 0: A is transposed, bit 1: B is transposed, bit 2: accumulate.
    flags: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

const TILE: u32 = 64u;
const DEPTH: u32 = 16u;

var<workgroup> a_tile: array<f32, 1024>; // [DEPTH][TILE]: a_tile[kk * TILE + row]
var<workgroup> b_tile: array<f32, 1024>; // [DEPTH][TILE]: b_tile[kk * TILE + col]

fn load_a(row: u32, kk: u32) -> f32 {
    if (row >= p.m || kk >= p.k) {
        return 0.0;
    }
    if ((p.flags & 1u) != 0u) {
        return a[kk * p.m + row];
    }
    return a[row * p.k + kk];
}

fn load_b(kk: u32, col: u32) -> f32 {
    if (kk >= p.k || col >= p.n) {
        return 0.0;
    }
    if ((p.flags & 2u) != 0u) {
        return b[col * p.k + kk];
    }
    return b[kk * p.n + col];
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) index: u32,
) {
    let row0 = group.y * TILE;
    let col0 = group.x * TILE;
    let a_transposed = (p.flags & 1u) != 0u;
    let b_transposed = (p.flags & 2u) != 0u;
    var acc: array<f32, 16>;
    for (var t = 0u; t < p.k; t = t + DEPTH) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let e = index + i * 256u;
            // Row-major A: consecutive invocations take consecutive kk.
            var r = e / DEPTH;
            var kk = e % DEPTH;
            if (a_transposed) {
                r = e % TILE;
                kk = e / TILE;
            }
            a_tile[kk * TILE + r] = load_a(row0 + r, t + kk);
            // Row-major B: consecutive invocations take consecutive columns.
            var col = e % TILE;
            var kb = e / TILE;
            if (b_transposed) {
                col = e / DEPTH;
                kb = e % DEPTH;
            }
            b_tile[kb * TILE + col] = load_b(t + kb, col0 + col);
        }
        workgroupBarrier();
        for (var kk = 0u; kk < DEPTH; kk = kk + 1u) {
            var av: array<f32, 4>;
            var bv: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                av[i] = a_tile[kk * TILE + local.y + 16u * i];
                bv[i] = b_tile[kk * TILE + local.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let accumulate = (p.flags & 4u) != 0u;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let row = row0 + local.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let col = col0 + local.x + 16u * j;
            if (row < p.m && col < p.n) {
                let at = row * p.n + col;
                var v = acc[i * 4u + j];
                if (accumulate) {
                    v = v + c[at];
                }
                c[at] = v;
            }
        }
    }
}
