// out[col] = sum of a[.., col], one invocation per column, rows in order
// (the CPU backend's order, so both give the same sums).

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let col = gid.y * groups.x * 64u + gid.x;
    if (col >= p.cols) {
        return;
    }
    var sum = 0.0;
    for (var r = 0u; r < p.rows; r = r + 1u) {
        sum = sum + a[r * p.cols + col];
    }
    out[col] = sum;
}
