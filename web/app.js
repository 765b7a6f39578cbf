// peekd's own web page: browse, filter and play scenes through peekd's REST
// API (docs/API.md, docs/FILTERS.md) on the same origin.  No build step, no
// dependencies.  State lives in the URL hash:
//   #/?page=2&sort=title&dir=ASC&q=…&tags=1,2&tall=1&tsub=1&perf=3&pall=1
//     &studio=6&rating=60&res=FULL_HD&org=true&seed=123   (browse)
//   #/scene/<id>                                          (scene view)

const PER_PAGE = 24;
const KINDS = { tags: 'findTags', performers: 'findPerformers', studios: 'findStudios' };
const DEFAULTS = {
  page: 1, sort: 'created_at', dir: 'DESC', q: '', seed: '',
  tags: [], tagsAll: false, tagsSub: false, performers: [], performersAll: false,
  studios: [], rating: '', res: '', org: '',
};
// state key ↔ hash parameter; lists are comma-separated, booleans "1".
const PARAMS = {
  page: 'page', sort: 'sort', dir: 'dir', q: 'q', seed: 'seed', tags: 'tags', tagsAll: 'tall',
  tagsSub: 'tsub', performers: 'perf', performersAll: 'pall', studios: 'studio', rating: 'rating',
  res: 'res', org: 'org',
};

const $ = (sel, root = document) => root.querySelector(sel);
const names = { tags: new Map(), performers: new Map(), studios: new Map() };
let rendered = null; // the hash currently on screen
let lastBrowse = '#/'; // the browse hash to go back to from a scene
let gridKey = null; // the hash whose results fill the grid
let browseScroll = 0;
let browseSeq = 0;
let browseAbort = null;

class AuthNeeded extends Error {}

/** Makes an element: el('a', {href: '#', className: 'x'}, child, 'text'). */
function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k in e && !k.startsWith('aria') && k !== 'role') e[k] = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  e.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return e;
}

// ---------------------------------------------------------------- API --

async function api(path, body, signal) {
  const init = body === undefined ? { signal }
    : { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal };
  const res = await fetch(path, init);
  if (res.status === 401) {
    showSignIn();
    throw new AuthNeeded('sign-in required');
  }
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const msg = json && json.error ? json.error + (json.field ? ` (${json.field})` : '') : `HTTP ${res.status}`;
    throw new Error(msg);
  }
  return json;
}

function showError(err) {
  const box = $('#error');
  if (!err || err instanceof AuthNeeded || err.name === 'AbortError') {
    box.hidden = true;
    return;
  }
  box.textContent = `Request failed: ${err.message}`;
  box.hidden = false;
}

// -------------------------------------------------------------- state --

function parseState(hash) {
  const s = structuredClone(DEFAULTS);
  const qs = new URLSearchParams(hash.replace(/^#\/?\??/, ''));
  for (const [key, p] of Object.entries(PARAMS)) {
    const v = qs.get(p);
    if (v === null || v === '') continue;
    if (Array.isArray(DEFAULTS[key])) s[key] = v.split(',').filter(Boolean);
    else if (typeof DEFAULTS[key] === 'boolean') s[key] = v === '1';
    else if (key === 'page') s.page = Math.max(1, Math.floor(Number(v)) || 1);
    else s[key] = v;
  }
  s.dir = s.dir.toUpperCase() === 'ASC' ? 'ASC' : 'DESC';
  return s;
}

function toHash(s) {
  const qs = new URLSearchParams();
  for (const [key, p] of Object.entries(PARAMS)) {
    const v = s[key];
    if (Array.isArray(v) ? v.length === 0 : v === DEFAULTS[key]) continue;
    qs.set(p, Array.isArray(v) ? v.join(',') : typeof v === 'boolean' ? '1' : String(v));
  }
  const str = qs.toString();
  return str ? `#/?${str}` : '#/';
}

/** The body of POST /api/library/scenes for a browse state. */
function sceneRequest(s) {
  const filter = {
    page: s.page, per_page: PER_PAGE,
    sort: s.sort === 'random' ? `random_${s.seed}` : s.sort, direction: s.dir,
  };
  if (s.q) filter.q = s.q;
  const sf = {};
  if (s.tags.length)
    sf.tags = { value: s.tags, modifier: s.tagsAll ? 'INCLUDES_ALL' : 'INCLUDES', depth: s.tagsSub ? -1 : 0 };
  if (s.performers.length)
    sf.performers = { value: s.performers, modifier: s.performersAll ? 'INCLUDES_ALL' : 'INCLUDES' };
  if (s.studios.length) sf.studios = { value: s.studios, modifier: 'INCLUDES', depth: 0 };
  if (s.rating) sf.rating100 = { value: Number(s.rating) - 1, modifier: 'GREATER_THAN' };
  if (s.res) sf.resolution = { value: s.res, modifier: 'EQUALS' };
  if (s.org) sf.organized = s.org === 'true';
  return { filter, scene_filter: sf };
}

const browseState = () => parseState(lastBrowse);

/** Shows `hash` (pushing a history entry unless replace) and renders it. */
function go(hash, replace = false) {
  if (hash !== location.hash) history[replace ? 'replaceState' : 'pushState'](null, '', hash);
  route();
}
const goBrowse = (s, replace = false) => go(toHash(s), replace);

function route() {
  const hash = location.hash || '#/';
  if (hash === rendered) return;
  rendered = hash;
  const m = /^#\/scene\/([^/?#]+)/.exec(hash);
  if (m) {
    showScene(decodeURIComponent(m[1]));
    return;
  }
  const s = parseState(hash);
  if (s.sort === 'random' && !/^\d+$/.test(s.seed)) {
    s.seed = String(newSeed());
    go(toHash(s), true);
    return;
  }
  lastBrowse = hash;
  showBrowse(s);
}

const newSeed = () => Math.floor(Math.random() * 1e8);

// ------------------------------------------------------------- format --

function duration(sec) {
  if (!(sec > 0)) return '';
  const t = Math.round(sec);
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), s = t % 60;
  const mm = h ? String(m).padStart(2, '0') : String(m);
  return `${h ? `${h}:` : ''}${mm}:${String(s).padStart(2, '0')}`;
}

function resolution(f) {
  if (!f || !f.width || !f.height) return '';
  const short = Math.min(f.width, f.height);
  return short >= 2160 ? `${Math.round(Math.max(f.width, f.height) / 1000)}K` : `${short}p`;
}

const fmtInt = (n) => n.toLocaleString('en-US');

function ago(unix) {
  const rtf = new Intl.RelativeTimeFormat('en', { numeric: 'auto' });
  const d = unix - Date.now() / 1000;
  for (const [unit, secs] of [['day', 86400], ['hour', 3600], ['minute', 60]])
    if (Math.abs(d) >= secs) return rtf.format(Math.round(d / secs), unit);
  return rtf.format(Math.round(d), 'second');
}

// -------------------------------------------------------------- cards --

function tagChip(t) {
  names.tags.set(t.id, t.name);
  return el('button', { type: 'button', className: 'chip', 'data-tag': t.id, 'aria-label': `Filter by tag ${t.name}` }, t.name);
}

function card(s) {
  const f = s.files && s.files[0];
  for (const p of s.performers) names.performers.set(p.id, p.name);
  const meta = [s.date, duration(f && f.duration), resolution(f), s.studio && s.studio.name].filter(Boolean);
  return el('li', { className: 'card', 'data-id': s.id },
    el('a', { href: `#/scene/${encodeURIComponent(s.id)}`, className: 'card-link' },
      el('div', { className: 'thumb' },
        s.paths.screenshot ? el('img', { src: s.paths.screenshot, alt: '', loading: 'lazy', width: 320, height: 180 }) : null,
        f && f.duration ? el('span', { className: 'badge' }, duration(f.duration)) : null),
      el('h3', { className: 'card-title' }, s.title || (f && f.basename) || `Scene ${s.id}`)),
    el('p', { className: 'meta' }, meta.join(' · ')),
    s.performers.length ? el('p', { className: 'performers' }, s.performers.map((p) => p.name).join(', ')) : null,
    s.tags.length ? el('div', { className: 'tags' }, ...s.tags.map(tagChip)) : null);
}

// ------------------------------------------------------------- browse --

function syncControls(s) {
  const q = $('#q');
  if (document.activeElement !== q) q.value = s.q;
  $('#sort').value = s.sort;
  const dir = $('#dir');
  dir.textContent = s.dir === 'ASC' ? '↑ Asc' : '↓ Desc';
  dir.setAttribute('aria-label', `Sort direction: ${s.dir === 'ASC' ? 'ascending' : 'descending'}`);
  $('#tags-all').checked = s.tagsAll;
  $('#tags-sub').checked = s.tagsSub;
  $('#performers-all').checked = s.performersAll;
  $('#rating').value = s.rating;
  $('#resolution').value = s.res;
  $('#organized').value = s.org;
  for (const kind of Object.keys(KINDS)) renderChips(kind, s);
}

function renderChips(kind, s) {
  const box = $(`.picker[data-kind=${kind}] [data-role=chips]`);
  box.replaceChildren(...s[kind].map((id) => {
    const name = names[kind].get(id) || `#${id}`;
    return el('button', { type: 'button', className: 'chip selected', 'data-remove': id, 'aria-label': `Remove ${name}` },
      name, el('span', { 'aria-hidden': 'true' }, ' ×'));
  }));
  const missing = s[kind].filter((id) => !names[kind].has(id));
  if (missing.length) {
    api(`/api/library/${kind}`, { ids: missing, filter: { per_page: missing.length } })
      .then((r) => {
        for (const e of r[KINDS[kind]][kind]) names[kind].set(e.id, e.name);
        for (const id of missing) if (!names[kind].has(id)) names[kind].set(id, `#${id}`);
        if (location.hash === lastBrowse) renderChips(kind, browseState());
      })
      .catch(showError);
  }
}

async function showBrowse(s) {
  $('#scene').hidden = true;
  $('#browse').hidden = false;
  document.title = s.q ? `${s.q} – peekd` : 'peekd';
  syncControls(s);
  if (gridKey === lastBrowse) { // back from a scene: keep the grid
    window.scrollTo(0, browseScroll);
    return;
  }
  const seq = ++browseSeq;
  if (browseAbort) browseAbort.abort();
  browseAbort = new AbortController();
  const results = $('#results');
  results.setAttribute('aria-busy', 'true');
  const t0 = performance.now();
  try {
    const r = await api('/api/library/scenes', sceneRequest(s), browseAbort.signal);
    const ms = performance.now() - t0;
    if (seq !== browseSeq) return;
    const { count, scenes } = r.findScenes;
    const pages = Math.max(1, Math.ceil(count / PER_PAGE));
    $('#count').replaceChildren(
      el('strong', { id: 'total', 'data-count': count }, fmtInt(count)), count === 1 ? ' scene' : ' scenes',
      el('span', { className: 'time', id: 'time' }, ` · ${ms.toFixed(1)} ms`));
    $('#pages').textContent = fmtInt(pages);
    const page = $('#page');
    page.value = s.page;
    page.max = pages;
    for (const b of document.querySelectorAll('.pager button')) {
      const back = b.dataset.page === 'first' || b.dataset.page === 'prev';
      b.disabled = back ? s.page <= 1 : s.page >= pages;
    }
    $('#grid').replaceChildren(...(scenes.length ? scenes.map(card)
      : [el('li', { className: 'empty' }, count ? 'No scenes on this page.' : 'No scenes match these filters.')]));
    gridKey = lastBrowse;
    showError(null);
  } catch (err) {
    if (seq === browseSeq) showError(err);
  } finally {
    if (seq === browseSeq) results.setAttribute('aria-busy', 'false');
  }
}

function addFilter(kind, id, name) {
  if (name) names[kind].set(id, name);
  const s = browseState();
  if (kind === 'studios') s.studios = [id];
  else if (!s[kind].includes(id)) s[kind].push(id);
  s.page = 1;
  goBrowse(s);
}

/** An autocomplete combobox over POST /api/library/<kind>/minimal. */
function picker(kind) {
  const box = $(`.picker[data-kind=${kind}]`);
  const input = $('[role=combobox]', box);
  const list = $('[role=listbox]', box);
  let items = [], active = -1, seq = 0, timer = 0;
  const close = () => {
    seq++;
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  };
  const paint = () => {
    list.replaceChildren(...items.map((it, i) => el('li', {
      role: 'option', id: `${kind}-opt-${i}`, 'aria-selected': String(i === active), 'data-index': i,
    }, it.name)));
    if (!items.length) list.append(el('li', { className: 'none' }, 'No matches'));
    if (active >= 0) input.setAttribute('aria-activedescendant', `${kind}-opt-${active}`);
    else input.removeAttribute('aria-activedescendant');
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
  };
  const search = async () => {
    const my = ++seq;
    try {
      const r = await api(`/api/library/${kind}/minimal`, { filter: { q: input.value.trim(), per_page: 20 } });
      if (my !== seq) return;
      items = r[kind];
      active = items.length ? 0 : -1;
      paint();
    } catch (err) { showError(err); }
  };
  const pick = (i) => {
    const it = items[i];
    if (!it) return;
    input.value = '';
    close();
    addFilter(kind, it.id, it.name);
  };
  input.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(search, 150); });
  input.addEventListener('blur', close);
  input.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      if (list.hidden) { search(); return; }
      if (!items.length) return;
      active = (active + (e.key === 'ArrowDown' ? 1 : items.length - 1)) % items.length;
      paint();
    } else if (e.key === 'Enter') {
      e.preventDefault();
      if (!list.hidden) pick(active);
    } else if (e.key === 'Escape' && !list.hidden) {
      e.preventDefault();
      close();
    }
  });
  list.addEventListener('mousedown', (e) => e.preventDefault()); // keep the focus in the input
  list.addEventListener('click', (e) => {
    const li = e.target.closest('[role=option]');
    if (li) pick(Number(li.dataset.index));
  });
  box.addEventListener('click', (e) => {
    const b = e.target.closest('[data-remove]');
    if (!b) return;
    const s = browseState();
    s[kind] = s[kind].filter((id) => id !== b.dataset.remove);
    s.page = 1;
    goBrowse(s);
    input.focus();
  });
}

// -------------------------------------------------------------- scene --

function player(s) {
  const hls = `/api/scene/${encodeURIComponent(s.id)}/hls/master.m3u8`;
  const wrap = el('div', { className: 'player' });
  const note = (why) => {
    const url = new URL(hls, location.href).href;
    wrap.replaceChildren(el('div', { className: 'note', id: 'hls-note' },
      el('p', {}, why),
      el('p', {}, 'Open the HLS stream in a player that supports it (Safari, VLC, mpv):'),
      el('p', {}, el('a', { href: url, id: 'hls-url' }, url))));
  };
  const video = el('video', { controls: true, preload: 'metadata', playsInline: true, id: 'video' });
  if (s.paths.screenshot) video.poster = s.paths.screenshot;
  const nativeHls = video.canPlayType('application/vnd.apple.mpegurl') !== '';
  const why = s.isStreamable ? 'The file could not be played directly.'
    : `The file needs transcoding (${s.streamabilityReasons.join(', ') || 'not directly playable'}).`;
  // Direct play first (peekd answers 404 when the file is not local), then
  // HLS where the browser plays it natively (no hls.js here), else the URL.
  const sources = [s.isStreamable && `/api/scene/${encodeURIComponent(s.id)}/stream`, nativeHls && hls].filter(Boolean);
  const next = () => {
    const src = sources.shift();
    if (src) video.src = src;
    else note(`${why} ${nativeHls ? 'The HLS stream could not be played either.' : 'This browser has no built-in HLS player.'}`);
  };
  video.addEventListener('error', next);
  next();
  if (sources.length || video.src) wrap.append(video);
  return wrap;
}

function details(s) {
  const f = s.files && s.files[0];
  const rows = [
    ['Date', s.date],
    ['Duration', f && duration(f.duration)],
    ['Resolution', f && f.width ? `${f.width}×${f.height} (${resolution(f)})` : ''],
    ['Codecs', f && [f.video_codec, f.audio_codec, f.format].filter(Boolean).join(' / ')],
    ['Studio', s.studio && el('button', { type: 'button', className: 'link', 'data-studio': s.studio.id }, s.studio.name)],
    ['Performers', s.performers.length && el('span', {}, ...s.performers.flatMap((p, i) => [i ? ', ' : '',
      el('button', { type: 'button', className: 'link', 'data-performer': p.id }, p.name)]))],
    ['Tags', s.tags.length && el('div', { className: 'tags' }, ...s.tags.map(tagChip))],
    ['Rating', s.rating100 !== null && s.rating100 !== undefined ? `${s.rating100} / 100` : ''],
    ['Plays', String(s.play_count ?? 0)],
    ['Code', s.code],
    ['File', f && f.path],
  ];
  return el('dl', { className: 'details' }, ...rows.filter(([, v]) => v).flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

async function showScene(id) {
  if (!$('#browse').hidden) browseScroll = window.scrollY;
  $('#browse').hidden = true;
  const view = $('#scene');
  view.hidden = false;
  view.setAttribute('aria-busy', 'true');
  view.replaceChildren(el('p', {}, el('a', { href: lastBrowse, className: 'back' }, '← Back to results')), el('p', {}, 'Loading…'));
  const seq = ++browseSeq;
  try {
    const enc = encodeURIComponent(id);
    const [s, sim] = await Promise.all([api(`/api/library/scenes/${enc}`), api(`/api/library/scenes/${enc}/similar?page=1`)]);
    if (seq !== browseSeq) return;
    const f = s.files && s.files[0];
    const title = s.title || (f && f.basename) || `Scene ${s.id}`;
    document.title = `${title} – peekd`;
    view.replaceChildren(
      el('p', {}, el('a', { href: lastBrowse, className: 'back' }, '← Back to results')),
      el('h1', { id: 'scene-title', tabIndex: -1 }, title),
      el('div', { className: 'scene-main' }, player(s), el('div', {}, details(s), s.details ? el('p', { className: 'desc' }, s.details) : null)),
      el('h2', {}, `Similar scenes (${fmtInt(sim.count)})`),
      el('ul', { className: 'grid', id: 'similar' }, ...sim.scenes.map(card)));
    $('#scene-title').focus();
    window.scrollTo(0, 0);
    showError(null);
  } catch (err) {
    if (seq === browseSeq) showError(err);
  } finally {
    if (seq === browseSeq) view.setAttribute('aria-busy', 'false');
  }
}

// --------------------------------------------------------------- sync --

let syncTimer = 0;
async function pollSync() {
  clearTimeout(syncTimer);
  const out = $('#sync');
  let next = 15000;
  try {
    const st = await api('/api/sync/status');
    if (!st.enabled) out.textContent = 'Sync: off';
    else if (st.running) {
      const busy = Object.entries(st.types || {}).find(([, t]) => t.total && t.done < t.total);
      out.textContent = `Sync: ${st.mode || ''} running${busy ? ` — ${busy[0]} ${fmtInt(busy[1].done)}/${fmtInt(busy[1].total)}` : ''}`;
      next = 2000;
    } else {
      out.textContent = st.lastSuccess ? `Sync: up to date, ${ago(st.lastSuccess)}` : 'Sync: not run yet';
    }
    if (st.lastError) out.append(el('span', { className: 'sync-error' }, ` — last error: ${st.lastError}`));
  } catch (err) {
    if (err instanceof AuthNeeded) return; // resumed after sign-in
    out.textContent = `Sync: status unavailable (${err.message})`;
  }
  syncTimer = setTimeout(pollSync, next);
}

// ------------------------------------------------------------ sign-in --

function showSignIn() {
  const d = $('#signin');
  if (!d.open) {
    d.showModal();
    $('#signin-pass').focus();
  }
}

async function signIn(e) {
  e.preventDefault();
  const errBox = $('#signin-error');
  errBox.hidden = true;
  try {
    const res = await fetch('/api/auth/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: $('#signin-user').value, password: $('#signin-pass').value }),
    });
    if (!res.ok) {
      const j = await res.json().catch(() => ({}));
      throw new Error(j.error || `HTTP ${res.status}`);
    }
    $('#signin-pass').value = '';
    $('#signin').close();
    rendered = null;
    gridKey = null;
    route();
    pollSync();
  } catch (err) {
    errBox.textContent = err.message;
    errBox.hidden = false;
  }
}

// -------------------------------------------------------------- wire-up --

function init() {
  let qTimer = 0;
  $('#q').addEventListener('input', () => {
    clearTimeout(qTimer);
    qTimer = setTimeout(() => {
      const s = browseState();
      const q = $('#q').value.trim();
      if (q === s.q && !$('#browse').hidden) return;
      s.q = q;
      s.page = 1;
      goBrowse(s, s.q !== '' && browseState().q !== '');
    }, 300);
  });
  const onChange = (sel, apply) => $(sel).addEventListener('change', (e) => {
    const s = browseState();
    apply(s, e.target);
    s.page = 1;
    goBrowse(s);
  });
  onChange('#sort', (s, t) => {
    s.sort = t.value;
    if (s.sort === 'random') s.seed = String(newSeed());
    else s.seed = '';
  });
  onChange('#tags-all', (s, t) => { s.tagsAll = t.checked; });
  onChange('#tags-sub', (s, t) => { s.tagsSub = t.checked; });
  onChange('#performers-all', (s, t) => { s.performersAll = t.checked; });
  onChange('#rating', (s, t) => { s.rating = t.value; });
  onChange('#resolution', (s, t) => { s.res = t.value; });
  onChange('#organized', (s, t) => { s.org = t.value; });
  $('#dir').addEventListener('click', () => {
    const s = browseState();
    s.dir = s.dir === 'ASC' ? 'DESC' : 'ASC';
    s.page = 1;
    goBrowse(s);
  });
  $('#shuffle').addEventListener('click', () => {
    const s = browseState();
    s.sort = 'random';
    s.seed = String(newSeed());
    s.page = 1;
    goBrowse(s);
  });
  $('.pager').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-page]');
    if (!b) return;
    const s = browseState();
    const pages = Number($('#page').max) || 1;
    s.page = { first: 1, prev: s.page - 1, next: s.page + 1, last: pages }[b.dataset.page];
    goBrowse(s);
  });
  $('#page').addEventListener('change', (e) => {
    const s = browseState();
    const pages = Number(e.target.max) || 1;
    s.page = Math.min(pages, Math.max(1, Math.floor(Number(e.target.value)) || 1));
    goBrowse(s);
  });
  $('#filter-form').addEventListener('submit', (e) => e.preventDefault());
  if (matchMedia('(max-width: 800px)').matches) $('.filters').open = false; // small screens: results first
  for (const kind of Object.keys(KINDS)) picker(kind);
  // Tag chips, studio and performer links anywhere add a filter.
  document.body.addEventListener('click', (e) => {
    const t = e.target.closest('[data-tag], [data-studio], [data-performer]');
    if (!t) return;
    if (t.dataset.tag) addFilter('tags', t.dataset.tag, t.textContent);
    else if (t.dataset.studio) addFilter('studios', t.dataset.studio, t.textContent);
    else addFilter('performers', t.dataset.performer, t.textContent);
  });
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && !/^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName)) {
      e.preventDefault();
      $('#q').focus();
    }
  });
  $('#signin-form').addEventListener('submit', signIn);
  $('#signin').addEventListener('cancel', (e) => e.preventDefault()); // no way around signing in
  window.addEventListener('popstate', route);
  window.addEventListener('hashchange', route);
  route();
  pollSync();
}

init();
