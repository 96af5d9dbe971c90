// One SGD-with-momentum step in place: v = momentum v - lr (g + l2 p); p += v.

struct Params {
    len: u32,
    learning_rate: f32,
    momentum: f32,
    l2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

const MIN_NORMAL: f32 = 1.17549435e-38;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.y * groups.x * 256u + gid.x;
    if (i >= p.len) {
        return;
    }
    var v = p.momentum * velocity[i] - p.learning_rate * (grad[i] + p.l2 * param[i]);
    v = select(v, 0.0, abs(v) < MIN_NORMAL);
    velocity[i] = v;
    param[i] = param[i] + v;
}
