// The Mass dashboard: reads this node's /v1 API and /metrics, draws what it
// finds, and calls promote and rollback. Hand-written, no dependencies; every
// value from the mesh is put in the page as text (never parsed as HTML).
"use strict";

(() => {
  const REFRESH_MS = 3000;
  // Metric samples kept: ten minutes at one every three seconds.
  const MAX_SAMPLES = 200;
  const MAX_JOBS = 100;
  const SVG = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "mass.token";

  // ---- DOM -----------------------------------------------------------------

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") el.setAttribute("class", value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** An HTML element: `h("td", {"data-x": 1}, "text", otherElement)`. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  /** An SVG element. */
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function table(headings, rows, attrs) {
    return h(
      "table",
      attrs,
      h("thead", {}, h("tr", {}, headings.map((t) => h("th", {}, t)))),
      h("tbody", {}, rows),
    );
  }

  function field(label, ...value) {
    return h("span", { class: "field" }, h("span", { class: "label" }, label), " ", value);
  }

  // ---- Formatting ----------------------------------------------------------

  function num(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (!Number.isFinite(x)) return String(x);
    if (x !== 0 && (Math.abs(x) >= 1e6 || Math.abs(x) < 1e-3)) return x.toExponential(2);
    return String(Number(x.toPrecision(digits)));
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return `${num(n)} ${units[i]}`;
  }

  function ago(ms) {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 60) return `${s.toFixed(1)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  }

  function when(ms) {
    return ms ? new Date(ms).toLocaleString() : "–";
  }

  /** Peer ids share their first characters: the end tells them apart. */
  function shortPeer(id) {
    return id && id.length > 12 ? `…${id.slice(-8)}` : id;
  }

  function shortId(id) {
    return id ? String(id).slice(0, 12) : "–";
  }

  function peerTag(id, selfId) {
    return h("code", { class: "peer", title: id, "data-peer-ref": id }, shortPeer(id), id === selfId ? " (this node)" : "");
  }

  /** The variant of a serde enum: "running", or the key of {"failed": "..."}. */
  function variant(value) {
    if (value === null || value === undefined) return "unknown";
    return typeof value === "string" ? value : Object.keys(value)[0];
  }

  function reason(value) {
    return value && typeof value === "object" ? Object.values(value)[0] : null;
  }

  function learnerName(learner) {
    const kind = variant(learner);
    if (kind === "mlp") return `mlp:${(learner.mlp.hidden || []).join(",")}`;
    return kind;
  }

  function ensembleName(ensemble) {
    const kind = variant(ensemble);
    if (kind === "single") return "single";
    const args = Object.values(reason(ensemble) || {});
    return [kind.replace("_", "-"), ...args].join(":");
  }

  function badge(state) {
    return h("span", { class: `badge state-${state}`, "data-badge": state }, state);
  }

  /** The headline metrics of an evaluation, as [label, value] pairs. */
  function metricsOf(e) {
    if (!e) return [];
    const pairs =
      e.task === "regression"
        ? [
            ["R2", e.r2],
            ["RMSE", e.rmse],
            ["MAE", e.mae],
          ]
        : [
            ["accuracy", e.accuracy],
            ["macro-F1", e.macro_f1],
            ["log-loss", e.log_loss],
            ["ROC AUC", e.roc_auc],
            ["calibration error", e.calibration_error],
          ];
    if (e.validation !== null && e.validation !== undefined) pairs.push(["validation", e.validation]);
    return pairs.filter(([, v]) => v !== null && v !== undefined);
  }

  function metricFields(e) {
    const pairs = metricsOf(e);
    if (!pairs.length) return h("span", { class: "muted" }, "no metrics yet");
    return pairs.map(([label, v]) => field(label, h("span", { "data-metric": label }, num(v))));
  }

  // ---- Charts --------------------------------------------------------------

  /**
   * A line chart of `series` ([{name, points: [[x, y], ...]}]) as inline SVG:
   * one polyline each, the y range labelled, a legend below.
   */
  function chart(key, series, options = {}) {
    const width = options.width || 560;
    const height = options.height || 170;
    const pad = { left: 56, right: 10, top: 10, bottom: 22 };
    const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const figure = h("figure", {
      class: "chart",
      "data-chart": key,
      "data-series": series.length,
      "data-samples": Math.max(0, ...series.map((s) => s.points.length)),
    });
    if (options.title) figure.append(h("figcaption", {}, options.title));
    const plot = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: "img",
      "aria-label": options.title || key,
    });
    plot.append(svg("rect", { class: "plot-bg", x: pad.left, y: pad.top, width: width - pad.left - pad.right, height: height - pad.top - pad.bottom }));
    if (all.length === 0) {
      plot.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "muted" }, options.empty || "no data yet"));
      figure.append(plot);
      return figure;
    }
    let [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
    let [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
    if (options.zero) y0 = Math.min(0, y0);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) {
      y1 = y0 + (Math.abs(y0) || 1) * 0.5;
      y0 = options.zero ? Math.min(0, y0) : y0 - (y1 - y0);
    }
    const sx = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
    const sy = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
    for (const frac of [0, 0.5, 1]) {
      const y = y0 + frac * (y1 - y0);
      plot.append(svg("line", { class: "grid", x1: pad.left, x2: width - pad.right, y1: sy(y), y2: sy(y) }));
      plot.append(svg("text", { class: "axis", x: pad.left - 4, y: sy(y) + 4, "text-anchor": "end" }, (options.format || num)(y)));
    }
    const xFormat = options.xFormat || num;
    plot.append(svg("text", { class: "axis", x: pad.left, y: height - 6 }, xFormat(x0)));
    plot.append(svg("text", { class: "axis", x: width - pad.right, y: height - 6, "text-anchor": "end" }, xFormat(x1)));
    series.forEach((s, i) => {
      const points = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
      const coords = points.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
      plot.append(svg("polyline", { class: `line series-${i % 8}`, points: coords, "data-series": s.name, "data-points": points.length }));
      if (points.length === 1) {
        plot.append(svg("circle", { class: `dot series-${i % 8}`, cx: sx(points[0][0]), cy: sy(points[0][1]), r: 2.5 }));
      }
    });
    figure.append(plot);
    if (series.length > 1 || options.legend) {
      figure.append(
        h(
          "div",
          { class: "legend" },
          series.map((s, i) => h("span", { class: `key series-${i % 8}` }, s.name)),
        ),
      );
    }
    return figure;
  }

  // ---- The API -------------------------------------------------------------

  class ApiError extends Error {}

  function token() {
    try {
      return localStorage.getItem(TOKEN_KEY) || "";
    } catch {
      return "";
    }
  }

  /** Calls this node's API with the saved token; throws the API's own error sentence. */
  async function api(path, { method = "GET", body, text = false } = {}) {
    const headers = { Accept: text ? "text/plain" : "application/json" };
    const bearer = token();
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(`${method} ${path}: the node did not answer (${e.message})`);
    }
    const content = await response.text();
    if (!response.ok) {
      let message = content;
      try {
        message = JSON.parse(content).error || content;
      } catch {
        // Not JSON: the body as it came.
      }
      const hint = response.status === 401 ? " (paste a token in the API token box above)" : "";
      throw new ApiError(`${method} ${path}: ${response.status} ${message}${hint}`);
    }
    if (text) return content;
    try {
      return JSON.parse(content);
    } catch (e) {
      throw new ApiError(`${method} ${path}: the answer is not JSON (${e.message})`);
    }
  }

  const enc = encodeURIComponent;
  /** Dataset names may hold slashes (the route takes the rest of the path). */
  const encPath = (name) => name.split("/").map(enc).join("/");

  // ---- Errors and notices --------------------------------------------------

  const errors = new Map();

  function showErrors() {
    const box = document.getElementById("error");
    if (!errors.size) {
      box.hidden = true;
      box.replaceChildren();
      return;
    }
    box.hidden = false;
    box.replaceChildren(
      ...[...errors].map(([key, message]) =>
        h("div", { class: "error-line", "data-error": key }, message, " ", h("button", { type: "button", class: "dismiss", "data-dismiss": key, title: "dismiss" }, "×")),
      ),
    );
  }

  function setError(key, error) {
    errors.set(key, error instanceof Error ? error.message : String(error));
    showErrors();
  }

  function clearError(key) {
    if (errors.delete(key)) showErrors();
  }

  let noticeTimer = null;

  /** A line saying what an action did, shown for a while. */
  function notice(message) {
    const box = document.getElementById("notice");
    box.hidden = false;
    box.textContent = message;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      box.hidden = true;
    }, 15000);
  }

  window.addEventListener("error", (event) => setError("script", `dashboard script error: ${event.message}`));
  window.addEventListener("unhandledrejection", (event) =>
    setError("script", `dashboard script error: ${event.reason && event.reason.message ? event.reason.message : event.reason}`),
  );

  // ---- State shared across refreshes ---------------------------------------

  let selfId = null;
  /** Model manifests by id: content-addressed, so read once. */
  const manifests = new Map();
  /** Losses heard through /progress while a job runs: job -> task -> [[epoch, loss]]. */
  const liveLoss = new Map();
  /** Metric samples: [{t, values: Map("name{labels}" -> number)}]. */
  const samples = [];

  // ---- Mesh ----------------------------------------------------------------

  const mesh = {
    async load() {
      return { peers: await api("/v1/peers") };
    },
    view({ peers }) {
      peers = [...peers].sort((a, b) => Number(b.self) - Number(a.self) || a.peer_id.localeCompare(b.peer_id));
      const up = peers.filter((p) => p.state === "up");
      const capacity = up.reduce((sum, p) => sum + (p.hardware ? p.hardware.capacity_gflops : 0), 0);
      const rows = peers.map((p) => {
        const hw = p.hardware;
        const load = p.load;
        return h(
          "tr",
          { "data-peer": p.peer_id, "data-state": p.state, "data-self": p.self ? "true" : null },
          h("td", {}, h("code", { class: "peer-id" }, p.peer_id), p.self ? h("span", { class: "badge self" }, "this node") : null),
          h("td", {}, badge(p.state)),
          h("td", {}, p.http_addr || "–"),
          h("td", {}, hw ? `${hw.cpu.model} (${hw.cpu.cores} cores)` : h("span", { class: "muted" }, "no advert yet")),
          h("td", { class: "num" }, hw ? bytes(hw.memory_bytes) : "–"),
          h("td", { class: "num", "data-gflops": hw ? hw.gemm_gflops : null }, hw ? num(hw.gemm_gflops) : "–"),
          h("td", { class: "num", "data-capacity": hw ? hw.capacity_gflops : null }, hw ? num(hw.capacity_gflops) : "–"),
          h(
            "td",
            {},
            hw && hw.gpus.length ? hw.gpus.map((g) => h("div", {}, `${g.name} (${g.backend}, ${num(g.gflops)} GFLOP/s)`)) : "–",
            hw && hw.bridges.length ? hw.bridges.map((b) => h("div", {}, `${b.name}: ${b.kind} ${variant(b.status)}`)) : null,
          ),
          h("td", { class: "num" }, load ? num(load.cpu_load, 2) : "–"),
          h("td", { class: "num" }, load ? bytes(load.free_memory_bytes) : "–"),
          h(
            "td",
            { "data-queued": load ? load.queues.reduce((s, q) => s + q.depth, 0) : null },
            load && load.queues.length ? load.queues.map((q) => h("span", { class: "queue", "data-queue": q.name }, `${q.name} ${q.depth}`)) : "–",
          ),
          h("td", {}, p.self ? "–" : ago(p.last_seen)),
        );
      });
      return h(
        "div",
        {},
        h(
          "p",
          { class: "summary", "data-peers": peers.length, "data-up": up.length },
          `${peers.length} peers, ${up.length} up, ${peers.length - up.length} down; `,
          `capacity of the live ones: ${num(capacity)} GFLOP/s`,
        ),
        table(
          ["peer", "state", "HTTP", "CPU", "memory", "GEMM GFLOP/s", "capacity GFLOP/s", "GPUs, bridges", "CPU load", "free memory", "queues", "last heard"],
          rows,
          { id: "peers" },
        ),
      );
    },
  };

  // ---- Datasets ------------------------------------------------------------

  const datasets = {
    async load() {
      const list = await api("/v1/datasets");
      const views = await Promise.allSettled(list.map((d) => api(`/v1/datasets/${encPath(d.name)}`)));
      return { list, views: views.map((r) => (r.status === "fulfilled" ? { ok: r.value } : { error: r.reason.message })) };
    },
    view({ list, views }) {
      if (!list.length) return h("p", { class: "muted", "data-empty": "datasets" }, "No datasets yet (`mass data put`).");
      return h(
        "div",
        {},
        list.map((summary, i) => {
          const detail = views[i];
          const article = h(
            "article",
            { class: "card", "data-dataset": summary.name, "data-shards": summary.shards, "data-rows": summary.rows },
            h("h3", {}, summary.name, " ", h("span", { class: "muted" }, `version ${summary.version}`)),
            h(
              "p",
              {},
              field("rows", summary.rows),
              field("columns", summary.columns),
              field("shards", h("span", { "data-shard-count": summary.shards }, summary.shards)),
              field("manifest", h("code", { title: summary.manifest }, shortId(summary.manifest))),
            ),
          );
          if (detail.error) {
            article.append(h("p", { class: "error", "data-error": `dataset:${summary.name}` }, detail.error));
            return article;
          }
          const m = detail.ok.manifest;
          const [train, validation, test] = m.split_rows;
          article.append(h("p", {}, field("train rows", train), field("validation rows", validation), field("test rows", test)));
          article.append(
            h("h4", {}, "Schema"),
            table(
              ["column", "kind", "present", "missing", "min", "max", "mean", "values"],
              m.schema.columns.map((c, j) => {
                const s = m.stats[j] || {};
                const mean = s.present ? s.sum / s.present : null;
                const counts = Object.entries(s.counts || {});
                return h(
                  "tr",
                  { "data-column": c.name, "data-kind": c.kind, "data-label": j === m.schema.label ? "true" : null },
                  h("td", {}, c.name, j === m.schema.label ? h("span", { class: "badge" }, "label") : null),
                  h("td", {}, c.kind),
                  h("td", { class: "num" }, s.present ?? "–"),
                  h("td", { class: "num" }, s.missing ?? "–"),
                  h("td", { class: "num" }, c.kind === "numeric" ? num(s.min) : "–"),
                  h("td", { class: "num" }, c.kind === "numeric" ? num(s.max) : "–"),
                  h("td", { class: "num" }, c.kind === "numeric" ? num(mean) : "–"),
                  h(
                    "td",
                    {},
                    counts.length
                      ? `${counts.length} distinct: ` +
                          counts
                            .slice(0, 6)
                            .map(([k, n]) => `${k} (${n})`)
                            .join(", ") +
                          (counts.length > 6 ? ", …" : "")
                      : "–",
                  ),
                );
              }),
              { class: "schema" },
            ),
            h("h4", {}, "Shards and where they live"),
            table(
              ["shard", "first row", "rows", "blob", "held by"],
              m.shards.map((shard, j) => {
                const holders = detail.ok.shard_holders[j] || [];
                return h(
                  "tr",
                  { "data-shard": j, "data-holders": holders.join(" ") },
                  h("td", { class: "num" }, j),
                  h("td", { class: "num" }, shard.first_row),
                  h("td", { class: "num" }, shard.rows),
                  h("td", {}, h("code", { title: shard.id }, shortId(shard.id))),
                  h("td", {}, holders.length ? holders.map((p) => peerTag(p, selfId)) : h("span", { class: "error" }, "no holder known")),
                );
              }),
              { class: "shards" },
            ),
          );
          return article;
        }),
      );
    },
  };

  // ---- Jobs and studies ----------------------------------------------------

  const jobs = {
    async load() {
      const [list, studies] = await Promise.allSettled([api("/v1/jobs"), api("/v1/studies")]);
      if (list.status === "rejected") throw list.reason;
      const records = list.value;
      const running = records.filter((j) => !["completed", "cancelled", "failed"].includes(variant(j.state)));
      const progress = await Promise.allSettled(running.map((j) => api(`/v1/jobs/${enc(j.id)}/progress`)));
      const live = {};
      // Losses heard while a job ran are dropped once it is over: its record has the curve.
      for (const id of liveLoss.keys()) if (!running.some((j) => j.id === id)) liveLoss.delete(id);
      running.forEach((job, i) => {
        if (progress[i].status !== "fulfilled") return;
        live[job.id] = progress[i].value;
        const tasks = liveLoss.get(job.id) || new Map();
        for (const t of progress[i].value) {
          const curve = tasks.get(t.task) || [];
          if (!curve.length || curve[curve.length - 1][0] !== t.epoch) curve.push([t.epoch, t.loss]);
          tasks.set(t.task, curve);
        }
        liveLoss.set(job.id, tasks);
      });
      return {
        records,
        live,
        studies: studies.status === "fulfilled" ? studies.value : null,
        studiesError: studies.status === "rejected" ? studies.reason.message : null,
      };
    },
    view({ records, live, studies, studiesError }) {
      const order = { running: 0, pending: 1, failed: 2, cancelled: 3, completed: 4 };
      const sorted = [...records].sort((a, b) => (order[variant(a.state)] ?? 5) - (order[variant(b.state)] ?? 5));
      const shown = sorted.slice(0, MAX_JOBS);
      return h(
        "div",
        {},
        h("p", { class: "summary", "data-jobs": records.length }, `${records.length} jobs`, records.length > shown.length ? ` (the first ${shown.length} shown)` : ""),
        shown.map((job) => jobCard(job, live[job.id])),
        h("h3", {}, "Studies"),
        studiesError
          ? h("p", { class: "error", "data-error": "studies" }, studiesError)
          : studies.length
            ? studies.map(studyCard)
            : h("p", { class: "muted", "data-empty": "studies" }, "No studies yet (`mass tune`)."),
      );
    },
  };

  function jobCard(job, live) {
    const state = variant(job.state);
    const spec = job.spec;
    const done = job.tasks.filter((t) => t.weights).length;
    const card = h(
      "article",
      { class: "card", "data-job": job.id, "data-model": spec.model, "data-state": state, "data-trial": spec.trial ? spec.trial.trial : null },
      h(
        "h3",
        {},
        spec.trial ? `trial ${spec.trial.trial} of study ${shortId(spec.trial.study)}` : spec.model,
        " ",
        badge(state),
        " ",
        h("code", { class: "muted", title: job.id }, shortId(job.id)),
      ),
      h(
        "p",
        {},
        field("dataset", spec.dataset),
        field("model", learnerName(spec.spec.learner)),
        field("ensemble", ensembleName(spec.ensemble)),
        field("task", job.task || spec.task || "inferred"),
        field("tasks done", h("span", { "data-tasks-done": done }, `${done} / ${job.tasks.length}`)),
        field("driven by", job.drivers.length ? job.drivers.map((d) => peerTag(d, selfId)) : "–"),
      ),
    );
    if (state === "failed") card.append(h("p", { class: "error", "data-error": `job:${job.id}` }, reason(job.state)));
    if (job.evaluation) card.append(h("p", {}, metricFields(job.evaluation)));
    const trainedOn = [...new Set(job.tasks.map((t) => t.peer).filter(Boolean))];
    if (trainedOn.length) card.append(h("p", {}, field("trained on", trainedOn.map((p) => peerTag(p, selfId)))));
    if (live && live.length) {
      card.append(
        h(
          "div",
          { class: "progress" },
          live.map((t) =>
            h(
              "div",
              { "data-task": t.task, "data-epoch": t.epoch, "data-epochs": t.epochs },
              h("progress", { max: Math.max(1, t.epochs), value: t.epoch }),
              ` task ${t.task} on `,
              peerTag(t.peer, selfId),
              `: epoch ${t.epoch} of ${t.epochs}, loss ${num(t.loss, 4)}`,
            ),
          ),
        ),
      );
    }
    // Loss curves: the records' own once tasks finish, what /progress told
    // this page while they run.
    const heard = liveLoss.get(job.id) || new Map();
    const series = job.tasks
      .map((t, i) => {
        const points = t.curve && t.curve.length ? t.curve.map((loss, epoch) => [epoch + 1, loss]) : heard.get(i) || [];
        return { name: `task ${i}`, points };
      })
      .filter((s) => s.points.length);
    if (series.length) {
      card.append(chart("loss", series, { title: "training loss by epoch", legend: series.length > 1, width: 480, height: 150 }));
    }
    return card;
  }

  function studyCard(study) {
    const state = variant(study.state);
    const spec = study.spec;
    const finished = study.trials.filter((t) => variant(t.state) !== "running").length;
    const scores = study.trials
      .map((t) => {
        const run = [...t.runs].reverse().find((r) => r.score !== null && r.score !== undefined);
        return run ? [t.number, run.score] : null;
      })
      .filter(Boolean);
    return h(
      "article",
      { class: "card", "data-study": study.id, "data-state": state },
      h("h3", {}, spec.name, " ", badge(state), " ", h("code", { class: "muted", title: study.id }, shortId(study.id))),
      h(
        "p",
        {},
        field("dataset", spec.base.dataset),
        field("strategy", variant(spec.strategy)),
        field("metric", spec.metric || "default"),
        field("trials", h("span", { "data-trials-done": finished }, `${finished} of ${spec.trials} finished, ${study.trials.length} started`)),
        field("best trial", study.best ? study.best[0] : "–"),
      ),
      state === "failed" ? h("p", { class: "error" }, reason(study.state)) : null,
      study.test ? h("p", {}, "winner on the test rows: ", metricFields(study.test)) : null,
      scores.length ? chart("trials", [{ name: "score", points: scores }], { title: "trial scores (validation)", width: 480, height: 140 }) : null,
    );
  }

  // ---- Models --------------------------------------------------------------

  async function manifestOf(name, id) {
    if (manifests.has(id)) return manifests.get(id);
    const manifest = await api(`/v1/models/${enc(name)}/versions/${enc(id)}`);
    manifests.set(id, manifest);
    return manifest;
  }

  const models = {
    async load() {
      const list = await api("/v1/models");
      const views = await Promise.allSettled(
        list.map(async (summary) => {
          const view = await api(`/v1/models/${enc(summary.name)}`);
          manifests.set(view.manifest_id, view.manifest);
          const versions = await Promise.allSettled(view.versions.map((v) => manifestOf(summary.name, v.manifest)));
          return {
            view,
            versions: versions.map((r) => (r.status === "fulfilled" ? { ok: r.value } : { error: r.reason.message })),
          };
        }),
      );
      return { list, views: views.map((r) => (r.status === "fulfilled" ? { ok: r.value } : { error: r.reason.message })) };
    },
    view({ list, views }) {
      if (!list.length) return h("p", { class: "muted", "data-empty": "models" }, "No models yet (`mass train`).");
      return h(
        "div",
        {},
        list.map((summary, i) => {
          const result = views[i];
          if (result.error) {
            return h(
              "article",
              { class: "card", "data-model": summary.name, "data-current": summary.version },
              h("h3", {}, summary.name),
              h("p", { class: "error", "data-error": `model:${summary.name}` }, result.error),
            );
          }
          return modelCard(result.ok.view, result.ok.versions);
        }),
      );
    },
  };

  function modelCard(view, versions) {
    const m = view.manifest;
    const served = view.version;
    const rows = view.versions.map((v, i) => {
      const found = versions[i];
      const manifest = found && found.ok;
      const isServed = v.version === served;
      return h(
        "tr",
        { "data-version": v.version, "data-served": isServed ? "true" : "false", "data-manifest": v.manifest },
        h("td", { class: "num" }, v.version),
        h("td", {}, when(v.published_at)),
        h("td", {}, h("code", { title: v.manifest }, shortId(v.manifest))),
        h(
          "td",
          {},
          manifest
            ? `${learnerName(manifest.spec.spec.learner)}, ${ensembleName(manifest.spec.ensemble)}` +
                (manifest.compression ? `, compressed (${variant(manifest.compression.method)})` : "") +
                (manifest.parts && manifest.parts.length ? `, composed of ${manifest.parts.length}` : "")
            : "–",
        ),
        h("td", {}, manifest ? metricFields(manifest.evaluation) : h("span", { class: "error" }, found ? found.error : "–")),
        h(
          "td",
          {},
          isServed
            ? h("span", { class: "badge state-up" }, "served")
            : h("button", { type: "button", "data-action": "promote", "data-model": view.name, "data-version": v.version }, `Promote v${v.version}`),
        ),
      );
    });
    const robustness = (m.evaluation && m.evaluation.robustness) || [];
    const headline = m.evaluation ? (m.evaluation.task === "regression" ? m.evaluation.r2 : m.evaluation.accuracy) : null;
    const curves = (m.curves || []).map((c, i) => ({ name: `member ${i}`, points: c.map((loss, epoch) => [epoch + 1, loss]) })).filter((s) => s.points.length);
    return h(
      "article",
      { class: "card", "data-model": view.name, "data-current": served, "data-versions": view.versions.length },
      h(
        "h3",
        {},
        view.name,
        " ",
        h("span", { class: "muted" }, `serving version `, h("span", { "data-served-version": served }, served), ` of ${view.versions.length}`),
        " ",
        h("button", { type: "button", "data-action": "rollback", "data-model": view.name, title: "serve the version before the current one" }, "Rollback"),
      ),
      h(
        "p",
        {},
        field("task", m.task),
        field("dataset", m.spec.dataset),
        field("classes", m.classes && m.classes.length ? m.classes.join(", ") : "–"),
        field("replicas", view.replicas.length ? view.replicas.map((p) => peerTag(p, selfId)) : "–"),
        field("trained on", [...new Set(m.trained_on || [])].map((p) => peerTag(p, selfId))),
        m.study ? field("study", h("code", { title: m.study }, shortId(m.study))) : null,
      ),
      h("h4", {}, "Versions"),
      table(["version", "published", "manifest", "model", `test metrics (${m.evaluation ? m.evaluation.rows : "?"} rows for the served one)`, ""], rows, { class: "versions" }),
      h("h4", {}, `Robustness of version ${served}`),
      robustness.length
        ? table(
            ["input", m.evaluation.task === "regression" ? "R2" : "accuracy", "change", "note"],
            [
              h("tr", { "data-perturbation": "none" }, h("td", {}, "as given"), h("td", { class: "num" }, num(headline)), h("td", {}), h("td", {})),
              ...robustness.map((r) =>
                h(
                  "tr",
                  { "data-perturbation": r.perturbation },
                  h("td", {}, r.perturbation),
                  h("td", { class: "num" }, num(r.metric)),
                  h("td", { class: "num" }, r.metric !== null && headline !== null ? num(r.metric - headline) : "–"),
                  h("td", {}, r.note || ""),
                ),
              ),
            ],
            { class: "robustness", "data-robustness": view.name },
          )
        : h("p", { class: "muted" }, "No robustness report for this version."),
      m.evaluation && m.evaluation.confusion && m.evaluation.confusion.length && m.evaluation.confusion.length <= 20
        ? [
            h("h4", {}, "Confusion (rows: truth, columns: predicted)"),
            table(
              ["", ...m.classes],
              m.evaluation.confusion.map((row, t) => h("tr", {}, h("th", {}, m.classes[t] ?? t), row.map((n) => h("td", { class: "num" }, n)))),
              { class: "confusion" },
            ),
          ]
        : null,
      curves.length ? chart("loss", curves, { title: `training loss of version ${served}`, legend: curves.length > 1, width: 480, height: 150 }) : null,
    );
  }

  async function act(button) {
    const name = button.dataset.model;
    const action = button.dataset.action;
    const version = Number(button.dataset.version);
    const question = action === "promote" ? `Serve version ${version} of model '${name}' on every node?` : `Roll model '${name}' back to the version before the one served now?`;
    if (!window.confirm(question)) return;
    button.disabled = true;
    try {
      const path = `/v1/models/${enc(name)}/${action}`;
      const answer = await api(path, { method: "POST", body: action === "promote" ? { version } : undefined });
      clearError("action");
      notice(`Model '${name}' now serves version ${answer.version}.`);
    } catch (e) {
      setError("action", e);
    } finally {
      button.disabled = false;
      signatures.delete("models");
      await refresh();
    }
  }

  // ---- Metrics -------------------------------------------------------------

  /** Prometheus/OpenMetrics text to a Map of "name{labels}" -> value. */
  function parseMetrics(text) {
    const values = new Map();
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const match = /^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
      if (!match) continue;
      const value = Number(match[3]);
      if (!Number.isNaN(value)) values.set(match[1] + (match[2] || ""), value);
    }
    return values;
  }

  /** The sum of every series of the family `name` (counters end in _total). */
  function family(values, name, labelFilter) {
    let sum = 0;
    let found = false;
    for (const [key, value] of values) {
      const base = key.split("{")[0];
      if (base !== name && base !== `${name}_total`) continue;
      if (labelFilter && !key.includes(labelFilter)) continue;
      sum += value;
      found = true;
    }
    return found ? sum : null;
  }

  const CHARTS = [
    { key: "peers", title: "peers in the table", series: [["up", "mass_peers", 'state="up"'], ["down", "mass_peers", 'state="down"']], rate: false },
    { key: "messages", title: "messages per second", series: [["in", "mass_messages_in"], ["out", "mass_messages_out"]], rate: true },
    { key: "network", title: "payload bytes per second", series: [["in", "mass_bytes_in"], ["out", "mass_bytes_out"]], rate: true, format: bytes },
    { key: "storage", title: "bytes stored and replicated here", series: [["stored", "mass_stored_bytes"], ["replicated", "mass_replicated_bytes"]], rate: false, format: bytes },
    { key: "refusals", title: "refusals per second (HTTP auth, peer requests)", series: [["auth", "mass_auth_refusals"], ["busy", "mass_requests_refused"]], rate: true },
    { key: "held", title: "bytes held here now, by kind", series: ["dataset", "model", "pipeline", "checkpoint", "prediction", "other", "unknown"].map((k) => [k, "mass_blob_bytes", `kind="${k}"`]), rate: false, format: bytes },
    { key: "jobs", title: "jobs known, by state", series: ["pending", "running", "completed", "failed", "cancelled"].map((s) => [s, "mass_jobs", `state="${s}"`]), rate: false },
    { key: "compute", title: "compute work here (all kinds)", series: [["running", "mass_compute_tasks", 'state="running"'], ["waiting", "mass_compute_tasks", 'state="waiting"']], rate: false },
  ];

  async function sampleMetrics() {
    try {
      const text = await api("/metrics", { text: true });
      samples.push({ t: Date.now(), values: parseMetrics(text) });
      if (samples.length > MAX_SAMPLES) samples.shift();
      clearError("metrics");
    } catch (e) {
      setError("metrics", e);
    }
  }

  function seriesOf(spec) {
    const start = samples.length ? samples[0].t : 0;
    return spec.series.map(([name, metric, labels]) => {
      const points = [];
      samples.forEach((s, i) => {
        const value = family(s.values, metric, labels);
        if (value === null) return;
        const x = (s.t - start) / 1000;
        if (!spec.rate) {
          points.push([x, value]);
          return;
        }
        if (i === 0) return;
        const before = family(samples[i - 1].values, metric, labels);
        const dt = (s.t - samples[i - 1].t) / 1000;
        // A counter that went down: the node restarted; no rate across it.
        if (before !== null && dt > 0 && value >= before) points.push([x, (value - before) / dt]);
      });
      return { name, points };
    });
  }

  const metrics = {
    async load() {
      // The sampler feeds this page; a refresh only redraws.
      return { count: samples.length, last: samples.length ? samples[samples.length - 1].t : 0 };
    },
    view() {
      if (!samples.length) return h("p", { class: "muted" }, "Waiting for the first sample of /metrics…");
      const latest = samples[samples.length - 1].values;
      const rows = [...latest]
        .filter(([key]) => !/_(bucket|created)(\{|$)/.test(key))
        .map(([key, value]) => h("tr", { "data-metric": key }, h("td", {}, h("code", {}, key)), h("td", { class: "num" }, num(value, 6))));
      return h(
        "div",
        {},
        h("p", { class: "summary", "data-samples": samples.length }, `${samples.length} samples of /metrics, one every ${REFRESH_MS / 1000} s (seconds on the x axis)`),
        h(
          "div",
          { class: "charts" },
          CHARTS.map((spec) =>
            chart(spec.key, seriesOf(spec), { title: spec.title, zero: true, legend: true, format: spec.format, xFormat: (x) => `${num(x)} s`, width: 440, height: 160 }),
          ),
        ),
        h("h3", {}, "Latest values"),
        table(["series", "value"], rows, { class: "metrics" }),
      );
    },
  };

  // ---- Pages, routing, refresh ---------------------------------------------

  const pages = { mesh, datasets, jobs, models, metrics };
  const signatures = new Map();
  let current = "mesh";
  let running = null;
  let again = false;

  async function loadHealth() {
    try {
      const health = await api("/v1/health");
      selfId = health.peer_id;
      const node = document.getElementById("node");
      node.dataset.peerId = health.peer_id;
      node.textContent = `node ${shortPeer(health.peer_id)} · v${health.version}`;
      node.title = health.peer_id;
      clearError("health");
    } catch (e) {
      setError("health", e);
    }
  }

  /** Reloads the page in view; redraws it only when what it shows changed. */
  async function refresh() {
    if (running) {
      again = true;
      return running;
    }
    running = (async () => {
      do {
        again = false;
        const name = current;
        const section = document.getElementById(`page-${name}`);
        const body = section.querySelector(".body");
        try {
          const data = await pages[name].load();
          const signature = JSON.stringify(data);
          if (signature !== signatures.get(name) || name === "mesh") {
            const content = pages[name].view(data);
            if (name === current) {
              body.replaceChildren(content);
              signatures.set(name, signature);
            }
          }
          section.dataset.loaded = "true";
          clearError(`page:${name}`);
        } catch (e) {
          setError(`page:${name}`, e);
          if (section.dataset.loaded !== "true") {
            body.replaceChildren(h("p", { class: "error", "data-error": `page:${name}` }, `Could not load this page: ${e.message}`));
          }
        }
      } while (again);
      document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    })();
    try {
      await running;
    } finally {
      running = null;
    }
  }

  function route() {
    const name = location.hash.replace(/^#/, "").split("/")[0];
    current = pages[name] ? name : "mesh";
    for (const section of document.querySelectorAll("section[data-page]")) section.hidden = section.dataset.page !== current;
    for (const tab of document.querySelectorAll("#tabs a")) {
      if (tab.dataset.tab === current) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    document.body.dataset.page = current;
    refresh();
  }

  async function tick() {
    if (document.getElementById("auto").checked) {
      await Promise.all([loadHealth(), sampleMetrics()]);
      await refresh();
    }
    setTimeout(tick, REFRESH_MS);
  }

  function start() {
    const input = document.getElementById("token");
    input.value = token();
    document.getElementById("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      try {
        if (input.value.trim()) localStorage.setItem(TOKEN_KEY, input.value.trim());
        else localStorage.removeItem(TOKEN_KEY);
      } catch (e) {
        setError("token", `the token cannot be kept in this browser: ${e.message}`);
      }
      errors.clear();
      showErrors();
      signatures.clear();
      for (const section of document.querySelectorAll("section[data-page]")) delete section.dataset.loaded;
      Promise.all([loadHealth(), sampleMetrics()]).then(refresh);
    });
    document.addEventListener("click", (event) => {
      const target = event.target instanceof Element ? event.target : null;
      const button = target && target.closest("button[data-action]");
      if (button) act(button);
      const dismiss = target && target.closest("button[data-dismiss]");
      if (dismiss) clearError(dismiss.dataset.dismiss);
    });
    window.addEventListener("hashchange", route);
    loadHealth();
    sampleMetrics().then(() => {
      if (current === "metrics") refresh();
    });
    route();
    setTimeout(tick, REFRESH_MS);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
