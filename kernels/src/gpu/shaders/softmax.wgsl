// Each row of z replaced by its softmax; one invocation per row (rows are
// output layers: a few to a few hundred values).

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> z: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.y * groups.x * 64u + gid.x;
    if (row >= p.rows) {
        return;
    }
    let start = row * p.cols;
    var m = -3.4028235e38;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        m = max(m, z[start + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) {
        let e = exp(z[start + j] - m);
        z[start + j] = e;
        sum = sum + e;
    }
    for (var j = 0u; j < p.cols; j = j + 1u) {
        z[start + j] = z[start + j] / sum;
    }
}
