// memory-router dashboard: polls the stats endpoint and redraws the table in place.
// No framework and no network beyond the router. Every value from the server goes into
// the page as text (textContent) or as numbers in SVG attributes, never as markup.
"use strict";

(() => {
  const REFRESH_MS = 3000;
  const STATS_URL = "stats";
  const TOKEN_KEY = "memory-router-control-token";
  const TEXT_COLUMNS = new Set(["user_id", "source"]);
  const columns = [...document.querySelectorAll("#clients thead th")].map((th) => th.dataset.key);
  const body = document.querySelector("#clients tbody");
  const windowSelect = document.getElementById("window");
  const tokenForm = document.getElementById("token-form");
  const tokenInput = document.getElementById("token");
  const errorLine = document.getElementById("error");

  let sortKey = sessionStorage.getItem("memory-router-sort-key") || "requests";
  let sortDescending = sessionStorage.getItem("memory-router-sort-desc") !== "false";
  let clients = [];
  let serverNow = 0; // ages are counted on the router's clock, not the browser's
  let timer = null;

  const text = (id, value, cls) => {
    const el = document.getElementById(id);
    el.textContent = value;
    el.className = cls || "";
  };

  const ms = (value) => (value === null || value === undefined ? "–" : value >= 1000
    ? `${(value / 1000).toFixed(value >= 10000 ? 0 : 1)} s` : `${Math.round(value)} ms`);
  const rate = (value) => (value >= 100 ? Math.round(value).toString() : value.toFixed(1));
  const ago = (epochSeconds, now) => {
    if (!epochSeconds) return "–";
    const s = Math.max(0, Math.round(now - epochSeconds));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
  };
  const when = (epochSeconds) => (epochSeconds
    ? new Date(epochSeconds * 1000).toLocaleTimeString() : "–");

  function formatCell(key, client, now) {
    const value = client[key];
    switch (key) {
      case "source": return value || "–";
      case "requests_per_minute":
      case "prompt_tokens_per_minute":
      case "completion_tokens_per_minute": return rate(value);
      case "latency_p50_ms":
      case "latency_p95_ms":
      case "ttft_p50_ms": return ms(value);
      case "last_seen": return ago(value, now);
      default: return String(value);
    }
  }

  function sparkline(requests, errors) {
    const ns = "http://www.w3.org/2000/svg";
    const width = 90;
    const height = 22;
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", width);
    svg.setAttribute("height", height);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    const peak = Math.max(1, ...requests);
    const step = width / requests.length;
    const total = requests.reduce((a, b) => a + b, 0);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${total} requests in the last ${requests.length} min, peak ${peak}/min`;
    svg.appendChild(title);
    const bar = (cls, count, i) => {
      if (!count) return;
      const h = Math.max(1, (count / peak) * height);
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("class", cls);
      rect.setAttribute("x", (i * step).toFixed(2));
      rect.setAttribute("y", (height - h).toFixed(2));
      rect.setAttribute("width", Math.max(1, step - 0.4).toFixed(2));
      rect.setAttribute("height", h.toFixed(2));
      svg.appendChild(rect);
    };
    requests.forEach((count, i) => {
      bar("req", count, i);
      bar("err", errors[i] || 0, i); // drawn over its request bar
    });
    return svg;
  }

  function compare(a, b) {
    const x = a[sortKey];
    const y = b[sortKey];
    let order;
    if (TEXT_COLUMNS.has(sortKey)) {
      order = String(x ?? "").localeCompare(String(y ?? ""));
    } else {
      order = (x ?? -1) - (y ?? -1);
    }
    if (order === 0) order = a.user_id.localeCompare(b.user_id);
    return sortDescending ? -order : order;
  }

  function render(now) {
    const sorted = [...clients].sort(compare);
    const rows = new Map([...body.rows].map((row) => [row.dataset.userId, row]));
    sorted.forEach((client, index) => {
      let row = rows.get(client.user_id);
      if (!row) {
        row = document.createElement("tr");
        row.dataset.userId = client.user_id;
        for (const key of columns) {
          const cell = document.createElement("td");
          cell.dataset.col = key;
          row.appendChild(cell);
        }
      }
      rows.delete(client.user_id);
      for (const cell of row.cells) {
        const key = cell.dataset.col;
        if (key === "chart") {
          cell.replaceChildren(sparkline(client.series.requests, client.series.errors));
          continue;
        }
        cell.textContent = formatCell(key, client, now);
        const value = client[key];
        cell.classList.toggle("nonzero-bad", (key === "errors_5xx" || key === "errors_4xx") && value > 0);
        cell.classList.toggle("nonzero-warn", key === "rate_limited" && value > 0);
      }
      if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
    });
    for (const gone of rows.values()) gone.remove();
    document.getElementById("empty").hidden = sorted.length > 0;
    for (const th of document.querySelectorAll("#clients thead th")) {
      if (th.dataset.key === sortKey) {
        th.setAttribute("aria-sort", sortDescending ? "descending" : "ascending");
      } else {
        th.removeAttribute("aria-sort");
      }
    }
  }

  function renderHeader(stats) {
    const router = stats.router || {};
    const config = router.config || {};
    const hash = config.sha256 ? config.sha256.slice(0, 12) : "–";
    text("config-hash", hash);
    document.getElementById("config-hash").title = config.path ? `${config.path}\nsha256 ${config.sha256}` : "";
    const last = config.last_reload;
    if (last) {
      const failed = last.ok === false;
      text("config-reload", `${when(last.at)} by ${last.trigger}${failed ? " (failed: kept the old rules)" : ""}`,
        failed ? "bad" : "");
    } else {
      text("config-reload", `none since start (${when(config.loaded_at)})`);
    }
    const litellm = (router.litellm && router.litellm.status) || "unknown";
    text("litellm-status", litellm === "ok" ? "ready" : litellm, litellm === "ok" ? "ok" : "bad");
    const configured = router.supermemory_key_configured;
    text("key-configured", configured ? "configured" : "not configured", configured ? "ok" : "warn");
    text("memory-backend", router.memory_backend || "–");
  }

  function headers() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  function showError(message) {
    errorLine.textContent = message;
    errorLine.hidden = !message;
  }

  async function refresh() {
    try {
      const response = await fetch(`${STATS_URL}?window=${encodeURIComponent(windowSelect.value)}`, {
        headers: headers(),
        cache: "no-store",
      });
      if (response.status === 403) {
        tokenForm.hidden = false;
        showError(sessionStorage.getItem(TOKEN_KEY)
          ? "The token was refused." : "This router's statistics are protected.");
        return;
      }
      if (!response.ok) {
        showError(`The stats endpoint answered HTTP ${response.status}.`);
        return;
      }
      const stats = await response.json();
      tokenForm.hidden = true;
      showError("");
      clients = stats.clients;
      renderHeader(stats);
      serverNow = stats.now;
      render(serverNow);
      document.getElementById("updated").textContent =
        `updated ${new Date(stats.now * 1000).toLocaleTimeString()}, window ${stats.window_seconds / 60} min`;
    } catch (error) {
      showError("The router cannot be reached; retrying.");
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, REFRESH_MS);
  }

  document.querySelector("#clients thead").addEventListener("click", (event) => {
    const th = event.target.closest("th");
    if (!th || th.dataset.type === "none") return;
    if (sortKey === th.dataset.key) {
      sortDescending = !sortDescending;
    } else {
      sortKey = th.dataset.key;
      sortDescending = !TEXT_COLUMNS.has(sortKey);
    }
    sessionStorage.setItem("memory-router-sort-key", sortKey);
    sessionStorage.setItem("memory-router-sort-desc", String(sortDescending));
    render(serverNow);
  });

  windowSelect.addEventListener("change", () => { refresh(); schedule(); });

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, tokenInput.value);
    tokenInput.value = "";
    refresh();
  });

  refresh().then(schedule);
})();
