// Autoenhance Batch page: plain DOM, no framework, no build step.
// Downloads are real browser navigations so a large ZIP streams to disk, never into page memory.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const POLL_MS = 500;
const JOB_READY = ["completed", "completed_with_errors"]; // the job's ZIP is there (its webhook says the same words)
const API = "v1/"; // the versioned API, relative to the page so a path prefix keeps working
const RECENT_PAGE = 5;
const THUMBS_SHOWN = 12;
const LOOKUP_DELAY_MS = 250;

const $ = (id) => document.getElementById(id);
const el = {
  modeBadge: $("mode-badge"), demoNotice: $("demo-notice"), healthError: $("health-error"), version: $("version"),
  orderId: $("order-id"), orderMsg: $("order-id-msg"), quality: $("quality"), qualityMsg: $("quality-msg"),
  preview: $("preview"), devMode: $("dev-mode"), creditNote: $("credit-note"),
  keyDetails: $("key-details"), serviceKey: $("service-key"),
  downloadBtn: $("download-btn"), downloadLabel: $("download-label"), jobBtn: $("job-btn"), downloadMsg: $("download-msg"),
  curl: $("curl-cmd"), copyCurl: $("copy-curl"),
  jobPanel: $("job-panel"), jobState: $("job-state"), jobProgress: $("job-progress"), jobDone: $("job-done"),
  jobFailed: $("job-failed"), jobTotal: $("job-total"), jobMsg: $("job-msg"), jobActions: $("job-actions"),
  jobFailures: $("job-failures"), jobFailureList: $("job-failure-list"),
  jobLinkRow: $("job-link-row"), jobLink: $("job-link"), jobCopyLink: $("job-copy-link"), jobLinkNote: $("job-link-note"),
  createIntro: $("create-intro"), adminToken: $("admin-token"), sampleBtn: $("sample-btn"), dropzone: $("dropzone"),
  photos: $("photos"), previews: $("previews"), uploadActions: $("upload-actions"), uploadBtn: $("upload-btn"),
  clearBtn: $("clear-btn"), createMsg: $("create-msg"),
  recentList: $("recent-list"), recentMsg: $("recent-msg"), recentMore: $("recent-more"), recentRefresh: $("recent-refresh"),
  orderView: $("order-view"), orderName: $("order-name"), orderCount: $("order-count"), thumbs: $("thumbs"),
  thumbsMore: $("thumbs-more"), orderStatus: $("order-status"), maxWidth: $("max-width"), maxWidthMsg: $("max-width-msg"),
  namesSequence: $("names-sequence"), setsMsg: $("sets-msg"),
  sort: $("sort"), orderMatches: $("order-matches"), enhanceType: $("enhance-type"), sky: $("sky"),
  verticalCorrection: $("vertical-correction"), privacy: $("privacy"),
  chosenCount: $("chosen-count"), selectAll: $("select-all"), selectNone: $("select-none"),
  nameTemplate: $("name-template"), nameTemplateMsg: $("name-template-msg"),
};

const state = {
  demo: false, selected: [], jobRun: 0, jobFor: "", recentNext: null, recentRun: 0, recentNeedsToken: false,
  // The order shown above the options: {id, data} once looked up, {id, error} when the lookup failed.
  order: null, lookup: null, lookupFor: "", lookupTimer: 0, thumbUrls: [], shownId: "", searchRun: 0,
  left: new Set(), // image ids unticked on the thumbnails (every photo is chosen by default)
  paidSets: { mls: true, print: true }, // sets that download full resolution; GET api/sets completes it
};

// ---------- helpers ----------

function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }

function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.dataset.kind = kind;
}

/** The human message of an error response: our JSON `detail` (string or FastAPI validation list). */
async function errorMessage(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  return `${res.status} ${res.statusText || "error"}`.trim();
}

async function getJSON(url, init = {}) {
  const res = await fetch(url, init);
  if (!res.ok) {
    const err = new Error(await errorMessage(res));
    err.status = res.status;
    throw err;
  }
  return res.json();
}

function saveAs(href, filename = "") {
  const a = document.createElement("a");
  a.href = href;
  a.download = filename;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
}

function filenameFrom(disposition, fallback) {
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition || "");
  if (star) { try { return decodeURIComponent(star[1]); } catch { /* fall through */ } }
  const plain = /filename="?([^";]+)"?/i.exec(disposition || "");
  return plain ? plain[1] : fallback;
}

// ---------- the form ----------

function orderId() { return el.orderId.value.trim().toLowerCase(); } // UUIDs are case-insensitive
function orderText() { return el.orderId.value.trim(); }
/** Not an ID (nor the start of one): the order's name, or part of it, to search for. */
function isName(text) { return text.length >= 2 && /[^0-9a-f-]/i.test(text); }
function serviceKey() { return el.serviceKey.value.trim(); }
function adminHeaders() {
  const token = el.adminToken.value.trim();
  return token ? { "X-Admin-Token": token } : {};
}

/** One message about the ID at a time, the latest answer winning: once the lookup of this ID failed,
 *  its sentence (below the photos) is the one shown, not a "valid" tick above it. False when the ID
 *  is incomplete or Autoenhance has no such order, so nothing offers to download it. */
function validateOrderId() {
  const id = orderId();
  const wellFormed = Boolean(id) && UUID.test(id);
  const failed = wellFormed && state.order && state.order.id === id ? state.order.error : null;
  let msg = "The order's UUID, from the Autoenhance web app or API.";
  let kind = "";
  if (failed) msg = "";
  else if (wellFormed) { msg = "Looks like a valid order ID."; kind = "ok"; }
  else if (isName(orderText())) { msg = "Searching the orders' names: choose the order below."; }
  else if (id) { msg = "Not a complete order ID yet: expected 8-4-4-4-12 hex digits."; kind = "error"; }
  setStatus(el.orderMsg, msg, kind);
  const unknown = Boolean(failed && failed.status === 404);
  el.orderId.setAttribute("aria-invalid", String(kind === "error" || unknown));
  return wellFormed && !unknown;
}

function validateQuality() {
  const raw = el.quality.value.trim();
  const q = Number(raw);
  const ok = !el.quality.validity.badInput && (raw === "" || (Number.isInteger(q) && q >= 1 && q <= 90));
  setStatus(el.qualityMsg, ok ? "" : "A whole number from 1 to 90, or empty for the default.", ok ? "" : "error");
  el.quality.setAttribute("aria-invalid", String(!ok));
  return ok;
}

function validateMaxWidth() {
  const raw = el.maxWidth.value.trim();
  const w = Number(raw);
  const ok = !el.maxWidth.validity.badInput && (raw === "" || (Number.isInteger(w) && w >= 1 && w <= 20000));
  setStatus(el.maxWidthMsg, ok ? "" : "A whole number of pixels, or empty for full width.", ok ? "" : "error");
  el.maxWidth.setAttribute("aria-invalid", String(!ok));
  return ok;
}

const TEMPLATE_HELP = "Fields: {n} {name} {ext} {order} {set} {letter}. Empty: the names above.";
const TEMPLATE_FIELD = /^(n(:[1-6])?|(name|order|set)(:(slug|upper|lower))?|(ext|letter)(:(upper|lower))?)$/;

/** The same rules as app/core/delivery/templates.py, so a bad template is said here rather than as a failed download. */
function validateTemplate() {
  const text = el.nameTemplate.value;
  let problem = "";
  for (const token of text.matchAll(/\{\{|\}\}|\{([^{}]*)\}|[{}]/g)) {
    if (token[0] === "{{" || token[0] === "}}") continue;
    if (token[1] === undefined) { problem = `A lone "${token[0]}": write ${token[0]}${token[0]} for a brace.`; break; }
    if (!TEMPLATE_FIELD.test(token[1])) { problem = `{${token[1]}} is not a field. ${TEMPLATE_HELP}`; break; }
  }
  setStatus(el.nameTemplateMsg, problem || TEMPLATE_HELP, problem ? "error" : "");
  el.nameTemplate.setAttribute("aria-invalid", String(Boolean(problem)));
  return !problem;
}

/** The photos ticked on the thumbnails, or null before the order is known. */
function chosenPhotos() {
  const order = state.order && state.order.id === orderId() ? state.order.data : null;
  return order ? order.photos.filter((p) => !state.left.has(p.image_id)) : null;
}

function validatePhotos() {
  const chosen = chosenPhotos();
  const total = state.order && state.order.data ? state.order.data.photos.length : 0;
  el.chosenCount.textContent = chosen && total ? `${chosen.length} of ${plural(total, "photo")} chosen` : "";
  const ok = !chosen || total === 0 || chosen.length > 0;
  if (!ok) setStatus(el.orderStatus, "Choose at least one photo (tick it), or Select all.", "error");
  return ok;
}

function choosePhotos(ids, chosen) {
  for (const id of ids) { if (chosen) state.left.delete(id); else state.left.add(id); }
  for (const box of el.thumbs.querySelectorAll("input.thumb-pick")) {
    box.checked = !state.left.has(box.value);
    box.closest("li").dataset.chosen = String(box.checked);
  }
  if (chosen && state.order && state.order.data) renderOrderStatus(state.order.data);
  refresh();
}

function chosenSets() { return [...document.querySelectorAll("input[name=set]:checked")].map((box) => box.value); }

function validateSets() {
  const ok = chosenSets().length > 0;
  setStatus(el.setsMsg, ok ? "" : "Choose at least one of these.", ok ? "" : "error");
  return ok;
}

function options() {
  const params = new URLSearchParams({ format: document.querySelector("input[name=format]:checked").value });
  if (el.quality.value.trim()) params.set("quality", el.quality.value.trim());
  if (el.maxWidth.value.trim()) params.set("max_width", el.maxWidth.value.trim());
  params.set("preview", String(el.preview.checked));
  params.set("dev_mode", String(el.devMode.checked));
  const sets = chosenSets();
  if (sets.length && sets.join(",") !== "full") params.set("sets", sets.join(","));
  if (el.namesSequence.checked) params.set("names", "sequence");
  if (el.sort.value) params.set("sort", el.sort.value);
  if (el.nameTemplate.value.trim()) params.set("template", el.nameTemplate.value);
  const chosen = chosenPhotos();
  if (chosen && state.left.size) params.set("images", chosen.map((p) => p.image_id).join(","));
  return params;
}

/** `orders/{id}/{route}?{options}`: the batch (`images`) and job (`jobs`) routes share one shape.
 * URLs are relative to the page, so the service also works mounted under a path prefix. */
function orderPath(route, id = orderId()) { return `${API}orders/${encodeURIComponent(id)}/${route}?${options()}`; }

function shellQuote(s) { return `'${s.replaceAll("'", "'\\''")}'`; }

function renderCurl() {
  const id = UUID.test(orderId()) ? orderId() : "ORDER_ID";
  const url = new URL(orderPath("images", id), document.baseURI).href;
  const key = serviceKey() ? ' -H "X-API-Key: $SERVICE_API_KEY"' : "";
  el.curl.textContent = `curl -fSL${key} -o autoenhance-${id.slice(0, 8)}.zip \\\n${shellQuote(url)}`;
}

/** Sets that download full-resolution enhanced photos (the ones Autoenhance charges for); as app/core/delivery/sets.py. */
function fullSizeSets() {
  if (el.devMode.checked) return [];
  return chosenSets().filter((set) => (set === "full" ? !el.preview.checked : Boolean(state.paidSets[set])));
}

function renderCreditNote() {
  const paid = fullSizeSets();
  const order = state.order && state.order.id === orderId() ? state.order.data : null;
  let head; let detail; let cost = "free";
  if (paid.length === 0) {
    head = "Free";
    detail = el.devMode.checked
      ? ": a test run downloads full resolution with a watermark and spends no credits."
      : ": previews, web-size photos and originals never spend Autoenhance credits.";
  } else {
    cost = "spend";
    const sets = `${plural(paid.length, "full-size set")} (${paid.join(", ")})`;
    if (order) {
      const n = (chosenPhotos() || order.photos).length;
      head = `Spends credits: up to ${plural(n, "Autoenhance credit")}`;
      detail = `. ${plural(n, "photo")} × ${sets} = ${plural(n * paid.length, "full-size download")}; ` +
        "Autoenhance charges each photo once, the first time it is downloaded at full size.";
    } else {
      head = "Spends credits";
      detail = `: one Autoenhance credit per photo for ${sets}, the first time each photo is downloaded at full size.`;
    }
  }
  if (state.demo && paid.length) {  // never "Spends credits" beside the banner's "Nothing is charged"
    const spend = head.replace(/^Spends credits:? ?/, "") || "credits";
    head = "Free in this demo";
    detail = `: with a live Autoenhance key this would spend ${spend}${detail}`;
  } else if (state.demo) {
    detail += " In this demo the simulator charges nothing.";
  }
  const strong = document.createElement("strong");
  strong.textContent = head;
  const rest = document.createElement("span");
  rest.className = "credit-detail";
  rest.textContent = detail;
  const text = document.createElement("span");
  text.append(strong, rest);
  el.creditNote.replaceChildren(text);
  el.creditNote.dataset.cost = cost;
}

// ---------- the order: name, photos, thumbnails ----------

function clearOrderView() {
  state.thumbUrls.forEach((url) => URL.revokeObjectURL(url));
  state.thumbUrls = [];
  el.thumbs.replaceChildren();
  state.left.clear();
  el.orderView.hidden = true;
  setStatus(el.orderStatus, "");
}

/** Forget the job shown (another order, or other options, make it another ZIP): its panel goes and
 *  the form's own Download ZIP comes back, so the page never offers two. */
function forgetJob() {
  state.jobRun++; // stops the polling of that job
  state.jobFor = "";
  el.jobPanel.hidden = true;
  el.jobActions.replaceChildren();
  el.jobLinkRow.hidden = true;
  el.downloadBtn.hidden = false;
  setStatus(el.jobMsg, "");
}

/** Forget the previous order's job and messages when another order ID is typed. */
function onOrderChanged() {
  const id = orderId();
  if (id === state.shownId) return;
  state.shownId = id;
  forgetJob();
  setStatus(el.downloadMsg, "");
  state.order = null;
  state.lookup = null;
  clearOrderView();
  clearTimeout(state.lookupTimer);
  if (UUID.test(id)) state.lookupTimer = setTimeout(() => lookupOrder(id), LOOKUP_DELAY_MS);
  else if (isName(orderText())) state.lookupTimer = setTimeout(() => searchOrders(orderText()), LOOKUP_DELAY_MS);
  if (!isName(orderText())) { state.searchRun++; el.orderMatches.replaceChildren(); }
}

/** The orders whose name contains `text` (Autoenhance's own search), offered as buttons that fill in the ID. */
async function searchOrders(text) {
  const run = ++state.searchRun;
  const params = new URLSearchParams({ q: text, per_page: "15" });
  try {
    const page = await getJSON(`${API}api/orders?${params}`, { headers: adminHeaders() });
    if (run !== state.searchRun) return;
    el.orderMatches.replaceChildren(...page.orders.map(recentItem));
    const n = page.orders.length;
    const more = page.next_offset ? " (the first 15: type more of the name)" : "";
    setStatus(el.orderMsg, n ? `${plural(n, "order")} named like “${text}”${more}: choose one.`
      : `No order's name contains “${text}”.`, n ? "" : "error");
    el.orderId.setAttribute("aria-invalid", String(n === 0)); // a name no order has is a wrong entry, like a broken ID
  } catch (err) {
    if (run !== state.searchRun) return;
    el.orderMatches.replaceChildren();
    const text401 = "Searching the account's orders is for the operator: type the admin token under “Create an order”, or paste the order's ID.";
    setStatus(el.orderMsg, err.status === 401 || err.status === 403 ? text401 : `Could not search orders: ${err.message}`, "error");
  }
}

function lookupOrder(id) {
  if (state.lookup && state.lookupFor === id) return state.lookup;
  state.lookupFor = id;
  setStatus(el.orderStatus, "Looking up the order…");
  const sort = el.sort.value ? `?sort=${encodeURIComponent(el.sort.value)}` : ""; // thumbnails in the chosen order
  state.lookup = getJSON(`${API}orders/${encodeURIComponent(id)}/photos${sort}`, { headers: keyHeaders() })
    .then((data) => {
      if (orderId() !== id) return state.order;
      state.order = { id, data };
      renderOrder(data);
      renderCreditNote();
      return state.order;
    })
    .catch((err) => {
      if (orderId() !== id) return state.order;
      state.order = { id, error: err };
      clearOrderView();
      if (!onAuthError(err, el.orderStatus)) setStatus(el.orderStatus, orderProblem(err), "error");
      refresh(); // this answer replaces the "valid order ID" tick, and an unknown order offers no download
      return state.order;
    });
  return state.lookup;
}

function orderProblem(err) {
  if (err.status === 404) return "Autoenhance has no order with this ID. Check it in the Autoenhance web app (Orders), then paste it again.";
  return `Could not look up the order: ${err.message}`;
}

function renderOrder(order) {
  const photos = order.photos;
  const waiting = photos.length - order.ready;
  el.orderName.textContent = order.name || "Unnamed order";
  el.orderCount.textContent = waiting
    ? `${plural(photos.length, "photo")}, ${order.ready} ready`
    : `${plural(photos.length, "photo")}, all ready`;
  el.thumbs.replaceChildren(...photos.slice(0, THUMBS_SHOWN).map(thumbItem));
  const more = photos.length - THUMBS_SHOWN;
  el.thumbsMore.hidden = more <= 0;
  el.thumbsMore.textContent = more > 0 ? `and ${plural(more, "more photo")}` : "";
  el.orderView.hidden = false;
  el.selectAll.hidden = el.selectNone.hidden = photos.length === 0;
  validatePhotos();
  renderOrderStatus(order);
}

function renderOrderStatus(order) {
  const photos = order.photos;
  const waiting = photos.length - order.ready;
  if (photos.length === 0) setStatus(el.orderStatus, "This order has no photos yet.", "warn");
  else if (order.ready === 0) setStatus(el.orderStatus, "None of these photos is ready yet: Autoenhance is still enhancing them. Try again in a few minutes.", "warn");
  else if (waiting) setStatus(el.orderStatus, `${plural(waiting, "photo")} not ready yet: the ZIP will list ${waiting === 1 ? "it" : "them"} in its report.`, "warn");
  else setStatus(el.orderStatus, "");
}

function thumbItem(photo) {
  const li = document.createElement("li");
  const img = document.createElement("img");
  img.alt = ""; // the name is written beside it
  img.width = 160;
  img.height = 120;
  img.decoding = "async";
  const name = document.createElement("span");
  name.className = "preview-name";
  name.textContent = photo.name || photo.image_id;
  name.title = name.textContent;
  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.className = "thumb-pick";
  pick.value = photo.image_id;
  pick.checked = !state.left.has(photo.image_id);
  pick.setAttribute("aria-label", `Include ${photo.name || photo.image_id}`);
  pick.addEventListener("change", () => choosePhotos([photo.image_id], pick.checked));
  li.dataset.chosen = String(pick.checked);
  li.append(img, name, pick);
  if (!photo.ready) {
    li.dataset.ready = "false";
    const badge = document.createElement("span");
    badge.className = "thumb-badge";
    badge.textContent = "not ready";
    li.append(badge);
  }
  // fetched, not <img src>: a service with a service key needs the header, which an <img> cannot send
  fetch(`${API}${photo.thumbnail_url}`, { headers: keyHeaders() })
    .then((res) => (res.ok ? res.blob() : null))
    .then((blob) => {
      if (!blob) { li.dataset.preview = "none"; img.title = "No preview available"; return; }
      const url = URL.createObjectURL(blob);
      state.thumbUrls.push(url);
      img.src = url;
    })
    .catch(() => {});
  return li;
}

function refresh() {
  const idOk = validateOrderId();
  onOrderChanged();
  if (state.jobFor && state.jobFor !== orderPath("jobs")) forgetJob(); // other options: another ZIP
  markChosen();
  const valid = [validateQuality(), validateMaxWidth(), validateSets(), validatePhotos(), validateTemplate()].every(Boolean) && idOk;
  el.downloadBtn.disabled = !valid;
  el.jobBtn.disabled = !valid;
  el.downloadLabel.textContent = serviceKey() ? "Download ZIP (prepared first)" : "Download ZIP";
  renderCreditNote();
  renderCurl();
}

/** Check the order first (a streamed download that fails only shows as a cancelled download), then stream it. */
async function startDownload() {
  if (el.downloadBtn.disabled) return;
  if (serviceKey()) { runJob({ autoSave: true }); return; }
  const id = orderId();
  const href = orderPath("images");
  setStatus(el.downloadMsg, "Checking the order…");
  const looked = await lookupOrder(id);
  if (orderId() !== id) return;
  if (!looked || looked.error) {
    const err = looked ? looked.error : new Error("no answer");
    if (!onAuthError(err, el.downloadMsg)) setStatus(el.downloadMsg, `Not started: ${orderProblem(err)}`, "error");
    return;
  }
  const order = looked.data;
  if (fullSizeSets().length && (await creditRefusal(id))) return;
  if (order.ready === 0) {
    setStatus(el.downloadMsg, order.photos.length
      ? "Not started: none of the photos is ready yet. Autoenhance is still enhancing them; try again in a few minutes."
      : "Not started: this order has no photos.", "error");
    return;
  }
  saveAs(href);
  const waiting = order.photos.length - order.ready;
  const note = waiting ? ` ${plural(waiting, "photo")} not ready yet will be listed in the ZIP's report.` : "";
  setStatus(el.downloadMsg, `Download started: your browser saves the ZIP as the photos arrive.${note}`, "ok");
}

/** A paid download may be refused (403) for callers the operator does not trust: ask first, since a
 *  refused navigation only shows as a failed download. True when refused (the reason is shown). */
async function creditRefusal(id) {
  let priced;
  try { priced = await getJSON(orderPath("photos", id), { headers: keyHeaders() }); } catch { return false; }
  const refused = priced && priced.cost && priced.cost.refused;
  if (refused && orderId() === id) setStatus(el.downloadMsg, `Not started: ${refused}`, "error");
  return Boolean(refused);
}

// ---------- jobs ----------

function renderJob(job) {
  const done = job.downloaded || 0;
  const failed = job.failed || 0;
  const total = job.total || 0;
  el.jobState.textContent = job.status.replaceAll("_", " "); // "completed with errors"
  el.jobState.dataset.status = job.status;
  el.jobDone.textContent = done;
  el.jobFailed.textContent = failed;
  el.jobTotal.textContent = total || "?";
  if (total > 0) { el.jobProgress.max = total; el.jobProgress.value = done + failed; }
  else if (JOB_READY.includes(job.status)) { el.jobProgress.max = 1; el.jobProgress.value = 1; }
  else el.jobProgress.removeAttribute("value"); // indeterminate until the order is read

  const failures = job.failures || [];
  el.jobFailures.hidden = failures.length === 0;
  el.jobFailureList.replaceChildren(...failures.map((f) => {
    const li = document.createElement("li");
    const name = document.createElement("strong");
    name.textContent = f.name || f.image_id;
    const reason = document.createElement("span");
    reason.textContent = f.reason;
    li.append(name, reason);
    if (f.recovery) {
      const hint = document.createElement("span");
      hint.className = "muted";
      hint.textContent = f.recovery;
      li.append(hint);
    }
    return li;
  }));
}

function showJobDownload(job) {
  const key = serviceKey();
  let control;
  if (key) {
    control = document.createElement("button");
    control.type = "button";
    control.addEventListener("click", () => saveJobWithKey(job, key));
  } else {
    control = document.createElement("a");
    control.href = job.download_url;
    control.download = "";
  }
  control.className = "btn btn-primary";
  control.id = "job-download-btn";
  control.textContent = "Download ZIP";
  const share = document.createElement("button");
  share.type = "button";
  share.className = "btn btn-secondary";
  share.id = "job-share-btn";
  share.textContent = "Make a link to send";
  share.addEventListener("click", () => makeShareLink(job, share));
  el.jobActions.replaceChildren(control, share);
  el.jobActions.hidden = false;
  el.downloadBtn.hidden = true; // this one Download ZIP saves the prepared file
  showJobLink(job);
}

/** The prepared file's absolute address, to copy into a mail or a download manager. */
function showJobLink(job) {
  el.jobLink.value = new URL(job.download_url, document.baseURI).href;
  el.jobCopyLink.textContent = "Copy link";
  const until = job.expires_at ? ` until ${new Date(job.expires_at).toLocaleString()}` : "";
  el.jobLinkNote.textContent = serviceKey()
    ? "It opens with the service key only; “Make a link to send” makes one that anyone can open."
    : `It works${until}; the download resumes if the connection drops.`;
  el.jobLinkRow.hidden = false;
}

async function copyJobLink() {
  try {
    await navigator.clipboard.writeText(el.jobLink.value);
  } catch {
    el.jobLink.select(); // plain-http origins other than localhost have no clipboard API
    el.jobCopyLink.textContent = "Selected: press Ctrl+C";
    return;
  }
  el.jobCopyLink.textContent = "Copied";
  setTimeout(() => { el.jobCopyLink.textContent = "Copy link"; }, 2000);
}

/** While the job runs: a button that cancels it (the service stops its downloads and frees its slot). */
function showJobCancel(started) {
  const cancel = document.createElement("button");
  cancel.type = "button";
  cancel.className = "btn btn-secondary";
  cancel.id = "job-cancel-btn";
  cancel.textContent = "Cancel";
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      renderJob(await getJSON(started.status_url, { method: "DELETE", headers: keyHeaders() }));
    } catch (err) {
      cancel.disabled = false;
      setStatus(el.jobMsg, `Could not cancel: ${err.message}`, "error");
    }
  });
  el.jobActions.replaceChildren(cancel);
  el.jobActions.hidden = false;
}

/** A link anyone can open without the access code, valid 7 days: shown to copy, never opened here. */
async function makeShareLink(job, button) {
  button.disabled = true;
  try {
    const made = await getJSON(`${job.status_url || `${API}jobs/${job.job_id}`}/share`, { method: "POST", headers: keyHeaders() });
    const field = document.createElement("input");
    field.type = "text";
    field.readOnly = true;
    field.id = "share-url";
    field.value = made.url;
    field.setAttribute("aria-label", "Link to send");
    button.replaceWith(field);
    field.select();
    setStatus(el.jobMsg, `Link ready: anyone with it can download the ZIP until ${new Date(made.expires_at).toLocaleString()}.`, "ok");
  } catch (err) {
    button.disabled = false;
    setStatus(el.jobMsg, `Could not make a link: ${err.message}`, "error");
  }
}

/** Only for the keyed job download: a navigation cannot carry X-API-Key, so fetch into a Blob. */
async function saveJobWithKey(job, key) {
  setStatus(el.jobMsg, "Fetching the archive with your key…");
  try {
    const res = await fetch(job.download_url, { headers: { "X-API-Key": key } });
    if (!res.ok) throw new Error(await errorMessage(res));
    const name = filenameFrom(res.headers.get("Content-Disposition"), `autoenhance-${(job.order_id || orderId()).slice(0, 8)}.zip`);
    const url = URL.createObjectURL(await res.blob());
    saveAs(url, name);
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    setStatus(el.jobMsg, `Saved ${name}.`, "ok");
  } catch (err) {
    setStatus(el.jobMsg, `Download failed: ${err.message}`, "error");
  }
}

function keyHeaders() {
  const key = serviceKey();
  return key ? { "X-API-Key": key } : {};
}

function onAuthError(err, node) {
  if (err.status !== 401) return false;
  el.keyDetails.open = true;
  el.serviceKey.focus();
  setStatus(node, `${err.message} This service needs its service key: enter it above.`, "error");
  return true;
}

async function runJob({ autoSave = false } = {}) {
  forgetJob(); // a newer job stops the polling of an older one
  const run = state.jobRun;
  state.jobFor = orderPath("jobs");
  el.jobPanel.hidden = false;
  el.jobActions.hidden = true;
  setStatus(el.downloadMsg, "");
  setStatus(el.jobMsg, "Asking the service to gather the photos…");
  renderJob({ status: "queued", failures: [] });
  let job;
  try {
    const started = await getJSON(orderPath("jobs"), { method: "POST", headers: keyHeaders() });
    setStatus(el.jobMsg, "");
    showJobCancel(started);
    let misses = 0;
    while (run === state.jobRun) {
      try {
        job = { ...await getJSON(started.status_url, { headers: keyHeaders() }), download_url: started.download_url };
        misses = 0;
      } catch (err) {
        if (err.status || ++misses > 3) throw err; // the job keeps running on the server: ride out a flaky network
      }
      if (job) renderJob(job);
      if (job && [...JOB_READY, "failed", "cancelled"].includes(job.status)) break;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } catch (err) {
    if (run !== state.jobRun) return;
    el.jobState.textContent = "error";
    el.jobState.dataset.status = "failed";
    if (!onAuthError(err, el.jobMsg)) {
      const text = err.status === 404 ? orderProblem(err) : err.message;
      setStatus(el.jobMsg, `Could not prepare the download: ${text}`, "error");
    }
    return;
  }
  if (run !== state.jobRun) return;
  if (job.status === "cancelled") {
    el.jobActions.hidden = true;
    setStatus(el.jobMsg, "Cancelled: nothing more is downloaded, and nothing was kept.", "warn");
    return;
  }
  if (job.status === "failed") {
    setStatus(el.jobMsg, `Could not prepare the download: ${job.error || "no photo could be downloaded"}`, "error");
    return;
  }
  const note = job.failed ? ` ${plural(job.failed, "image")} could not be included (listed below).` : "";
  setStatus(el.jobMsg, `Ready: ${plural(job.downloaded, "file")} in the ZIP.${note}`, job.failed ? "warn" : "ok");
  showJobDownload(job);
  if (autoSave) saveJobWithKey(job, serviceKey());
}

// ---------- create an order ----------

function setCreating(busy) {
  el.sampleBtn.disabled = busy;
  el.uploadBtn.disabled = busy;
  el.photos.disabled = busy;
}

async function createOrder(url, init) {
  setCreating(true);
  setStatus(el.createMsg, "Creating the order…");
  try {
    const order = await getJSON(url, { method: "POST", ...init, headers: adminHeaders() });
    el.orderId.value = order.order_id;
    refresh();
    loadRecent();
    const ready = state.demo ? "" : " Enhancement takes a little while; images not yet ready are listed in the ZIP's report.";
    setStatus(el.createMsg,
      `Created “${order.name}” with ${plural(order.images, "photo")}. Its ID is now in the order field.${ready}`, "ok");
    el.orderId.scrollIntoView({ behavior: "smooth", block: "center" });
    el.orderId.focus({ preventScroll: true });
    return true;
  } catch (err) {
    const hint = err.status === 401 || err.status === 403 ? " Check the admin token." : "";
    setStatus(el.createMsg, `Could not create the order: ${err.message}${hint}`, "error");
    return false;
  } finally {
    setCreating(false);
  }
}

function addPhotos(files) {
  const known = new Set(state.selected.map(({ file }) => `${file.name}|${file.size}|${file.lastModified}`));
  for (const file of files) {
    const sig = `${file.name}|${file.size}|${file.lastModified}`;
    if (!file.type.startsWith("image/") || known.has(sig)) continue;
    known.add(sig);
    state.selected.push({ file, url: URL.createObjectURL(file) });
  }
  renderPreviews();
}

function removePhoto(index) {
  URL.revokeObjectURL(state.selected[index].url);
  state.selected.splice(index, 1);
  renderPreviews();
}

function clearPhotos() {
  state.selected.forEach(({ url }) => URL.revokeObjectURL(url));
  state.selected = [];
  renderPreviews();
}

function renderPreviews() {
  el.previews.replaceChildren(...state.selected.map(({ file, url }, index) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = url;
    img.alt = "";
    const name = document.createElement("span");
    name.className = "preview-name";
    name.textContent = file.name;
    name.title = file.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "preview-remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove ${file.name}`);
    remove.addEventListener("click", () => removePhoto(index));
    li.append(img, name, remove);
    return li;
  }));
  const n = state.selected.length;
  el.previews.hidden = n === 0;
  el.uploadActions.hidden = n === 0;
  el.uploadBtn.textContent = `Create order from ${plural(n, "photo")}`;
}

function uploadPhotos() {
  const form = new FormData();
  state.selected.forEach(({ file }) => form.append("files", file, file.name));
  if (el.enhanceType.value) form.append("enhance_type", el.enhanceType.value);
  if (el.sky.value) form.append("sky", el.sky.value);
  for (const box of document.querySelectorAll("input[name=restage]:checked")) {
    const [field, value] = box.value.split("=");
    form.append(field, value);
  }
  form.append("vertical_correction", String(el.verticalCorrection.checked));
  if (el.privacy.checked) form.append("privacy", "true");
  createOrder(`${API}api/create-order`, { body: form }).then((ok) => { if (ok) clearPhotos(); });
}

// ---------- recent orders ----------

function describeOrder(order) {
  const parts = [];
  if (order.total_images !== null && order.total_images !== undefined) parts.push(plural(order.total_images, "image"));
  if (order.created_at) {
    const when = new Date(order.created_at);
    if (!Number.isNaN(when.getTime())) parts.push(when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
  }
  if (order.status) parts.push(order.status);
  return parts.join(" · ");
}

function markChosen() {
  for (const button of el.recentList.querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.orderId === orderId()));
  }
}

function recentItem(order) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "recent-item";
  button.dataset.orderId = order.order_id;
  const name = document.createElement("span");
  name.className = "recent-name";
  name.textContent = order.name || "(unnamed order)";
  const meta = document.createElement("span");
  meta.className = "recent-meta";
  meta.textContent = describeOrder(order);
  const id = document.createElement("span");
  id.className = "recent-id";
  id.textContent = order.order_id;
  button.append(name, meta, id);
  button.addEventListener("click", () => {
    el.orderId.value = order.order_id;
    el.orderMatches.replaceChildren();
    refresh();
    el.orderId.focus();
  });
  li.append(button);
  return li;
}

/** One page of the upstream's order listing; `more` appends the next page, otherwise starts over. */
async function loadRecent({ more = false } = {}) {
  const run = ++state.recentRun;
  const params = new URLSearchParams({ per_page: String(RECENT_PAGE) });
  if (more && state.recentNext) params.set("offset", state.recentNext);
  el.recentMore.disabled = true;
  setStatus(el.recentMsg, more ? "Loading older orders…" : "Loading recent orders…");
  try {
    const page = await getJSON(`${API}api/orders?${params}`, { headers: adminHeaders() });
    if (run !== state.recentRun) return;
    state.recentNeedsToken = false;
    const items = page.orders.map(recentItem);
    if (more) el.recentList.append(...items); else el.recentList.replaceChildren(...items);
    state.recentNext = page.next_offset;
    el.recentMore.hidden = !page.next_offset;
    const shown = el.recentList.children.length;
    setStatus(el.recentMsg, shown ? `${plural(shown, "order")} shown, newest first.` : "No orders yet: create one below.");
    markChosen();
  } catch (err) {
    if (run !== state.recentRun) return;
    state.recentNeedsToken = err.status === 401 || err.status === 403;
    if (!more) el.recentList.replaceChildren();
    el.recentMore.hidden = true;
    const text = state.recentNeedsToken
      ? "Listing the account's orders is for the operator: type the admin token under “Create an order”."
      : `Could not list orders: ${err.message}`;
    setStatus(el.recentMsg, text, state.recentNeedsToken ? "" : "error");
  } finally {
    el.recentMore.disabled = false;
  }
}

// ---------- copy ----------

async function copyCurl() {
  const text = el.curl.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Plain-http origins other than localhost have no clipboard API: select the text instead.
    const range = document.createRange();
    range.selectNodeContents(el.curl);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    el.copyCurl.textContent = "Selected: press Ctrl+C";
    return;
  }
  el.copyCurl.textContent = "Copied";
  setTimeout(() => { el.copyCurl.textContent = "Copy"; }, 2000);
}

// ---------- start ----------

async function loadHealth() {
  try {
    const health = await getJSON("health");
    state.demo = health.mode === "demo";
    el.modeBadge.textContent = state.demo ? "Demo mode" : "Live";
    el.modeBadge.dataset.mode = health.mode;
    el.modeBadge.hidden = false;
    if (health.version) el.version.textContent = ` · v${health.version}`;
    if (state.demo) {
      el.demoNotice.hidden = false;
      el.createIntro.textContent = "No order yet? Create one in the built-in simulator: nothing is sent to Autoenhance.";
      if (!orderId() && health.demo_order_id) el.orderId.value = health.demo_order_id;
    } else {
      el.createIntro.textContent = "No order yet? Upload photos to Autoenhance and get an order ID back. Enhancing them uses credits.";
    }
  } catch (err) {
    el.healthError.textContent = `The service did not answer its health check (${err.message}).`;
    el.healthError.hidden = false;
  }
  refresh();
  loadRecent();
}

for (const node of [el.orderId, el.quality, el.maxWidth, el.serviceKey, el.nameTemplate]) node.addEventListener("input", refresh);
el.serviceKey.addEventListener("input", () => { // the lookup asked for a code: try again with it
  if (state.order && state.order.error && state.order.error.status === 401) {
    state.lookup = null;
    state.shownId = "";
    refresh();
  }
});
el.recentRefresh.addEventListener("click", () => loadRecent());
el.recentMore.addEventListener("click", () => loadRecent({ more: true }));
let tokenTimer = 0;
el.adminToken.addEventListener("input", () => { // typed the token the listing asked for: try again
  clearTimeout(tokenTimer);
  if (state.recentNeedsToken) tokenTimer = setTimeout(() => loadRecent(), 400);
});
for (const node of document.querySelectorAll("input[name=format], input[name=set], #names-sequence, #preview, #dev-mode")) {
  node.addEventListener("change", refresh);
}
for (const node of [el.orderId, el.quality, el.maxWidth]) {
  node.addEventListener("keydown", (e) => { if (e.key === "Enter") startDownload(); });
}
el.sort.addEventListener("change", () => { // the thumbnails follow the chosen order: look them up again
  state.lookup = null;
  state.shownId = "";
  refresh();
});
el.selectAll.addEventListener("click", () => choosePhotos([...state.left], true));
el.selectNone.addEventListener("click", () => {
  const order = state.order && state.order.data;
  if (order) choosePhotos(order.photos.map((p) => p.image_id), false);
});
el.downloadBtn.addEventListener("click", startDownload);
el.jobBtn.addEventListener("click", () => runJob());
el.copyCurl.addEventListener("click", copyCurl);
el.jobCopyLink.addEventListener("click", copyJobLink);
el.sampleBtn.addEventListener("click", () => createOrder(`${API}api/create-sample-order`, {}));
el.uploadBtn.addEventListener("click", uploadPhotos);
el.clearBtn.addEventListener("click", clearPhotos);
el.photos.addEventListener("change", () => {
  addPhotos([...el.photos.files]);
  el.photos.value = ""; // so picking the same file again (after removing it) fires `change` again
});
for (const type of ["dragenter", "dragover"]) {
  el.dropzone.addEventListener(type, (e) => { e.preventDefault(); el.dropzone.classList.add("dragging"); });
}
el.dropzone.addEventListener("dragleave", (e) => {
  if (!el.dropzone.contains(e.relatedTarget)) el.dropzone.classList.remove("dragging");
});
el.dropzone.addEventListener("drop", (e) => {
  e.preventDefault();
  el.dropzone.classList.remove("dragging");
  addPhotos(e.dataTransfer.files);
});
// A photo dropped next to the zone must not make the browser navigate away to it.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());

/** The operator's own sets (DELIVERY_SETS) as more checkboxes beside the built-in ones. */
async function loadSets() {
  let listed;
  try { listed = (await getJSON(`${API}api/sets`, { headers: keyHeaders() })).sets; } catch { return; }
  const box = document.querySelector("fieldset.sets");
  const last = box.querySelector("input[value=original]").closest("label");
  for (const set of listed) {
    state.paidSets[set.name] = set.spends_credits;
    if (set.built_in || box.querySelector(`input[value="${CSS.escape(set.name)}"]`)) continue;
    const label = document.createElement("label");
    label.className = "check";
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "set";
    input.value = set.name;
    input.addEventListener("change", refresh);
    const text = document.createElement("span");
    const title = document.createElement("strong");
    title.textContent = set.name;
    const detail = document.createElement("span");
    detail.className = "muted";
    detail.textContent = ` ${set.description || ""}${set.spends_credits ? "; full resolution, uses credits" : ""}`;
    text.append(title, detail);
    label.append(input, text);
    last.before(label);
  }
}

refresh();
loadHealth();
loadSets();
