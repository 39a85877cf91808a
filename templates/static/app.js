// ferry: the small script behind the pages. The pages work without it for reading; it adds
// the actions (through the JSON API, with the session's CSRF token), live logs over the
// WebSocket, and refreshing of parts that change while one looks at them. No build step.
(function () {
  'use strict';

  const body = document.body;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';
  const labels = parseJSON(body.dataset.statusLabels) || {};

  function parseJSON(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  // api calls the JSON API and returns the decoded answer, or throws an Error with the
  // server's own words.
  async function api(method, url, data) {
    const opts = { method: method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf, 'Accept': 'application/json' } };
    if (data !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(data);
    }
    const res = await fetch(url, opts);
    const text = await res.text();
    const answer = text ? parseJSON(text) : null;
    if (!res.ok) {
      throw new Error((answer && answer.error) || (body.dataset.msgFailed + ': ' + res.status));
    }
    return answer;
  }

  // then does what an element's data-then says after a good answer: reload, goto:/x/{id},
  // message, show-token.
  function then(el, answer) {
    const what = el.dataset.then || 'reload';
    if (what === 'reload') {
      location.reload();
    } else if (what.startsWith('goto:')) {
      const id = answer && answer.id !== undefined ? answer.id : '';
      location.assign(what.slice(5).replace('{id}', encodeURIComponent(id)));
    } else if (what === 'message') {
      const out = document.getElementById(el.dataset.messageAt || 'action-message');
      if (out) out.textContent = el.dataset.done || '';
    } else if (what.startsWith('refresh:')) {
      // refresh:#a,#b swaps those parts for the same parts of a fresh copy of the page.
      // data-note names an element of the fresh part to show, such as "Saved.".
      if (el.tagName === 'FORM' && 'reset' in el.dataset) el.reset();
      replaceParts(what.slice(8).split(',')).then(function () {
        const note = el.dataset.note && document.querySelector(el.dataset.note);
        if (note) note.hidden = false;
      });
    } else if (what.startsWith('show:')) {
      // show:#box fills the box's [data-answer=field] elements from the answer and shows it.
      const box = document.querySelector(what.slice(5));
      box.querySelectorAll('[data-answer]').forEach(function (out) {
        const v = answer ? answer[out.dataset.answer] : '';
        if ('value' in out && out.tagName === 'INPUT') out.value = v || ''; else out.textContent = v || '';
      });
      box.querySelectorAll('a[data-answer-href]').forEach(function (a) {
        a.href = a.dataset.answerHref.replace('{name}', encodeURIComponent(answer.name || ''));
      });
      box.hidden = false;
      if (el.tagName === 'FORM') el.reset();
      if (box.dataset.refresh !== undefined || box.dataset.alsoRefresh) replaceParts((box.dataset.alsoRefresh || '').split(',').filter(Boolean));
    } else if (what === 'show-token') {
      const box = document.getElementById('new-token');
      document.getElementById('new-token-value').textContent = answer.token;
      box.hidden = false;
      if (el.tagName === 'FORM') el.reset();
      replaceParts(['#token-list']);
    }
  }

  // replaceParts fetches the page again and swaps each selector's element for its fresh copy,
  // so the effect of a form shows without reloading the page.
  async function replaceParts(selectors) {
    const res = await fetch(location.href, { credentials: 'same-origin' });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
    for (const sel of selectors) {
      const now = document.querySelector(sel.trim());
      const fresh = doc.querySelector(sel.trim());
      if (now && fresh) now.replaceWith(document.importNode(fresh, true));
      else if (now) now.remove();
    }
    // The first run's banner follows every change: the next step may have come.
    const banner = document.getElementById('setup-banner');
    const freshBanner = doc.getElementById('setup-banner');
    if (banner && freshBanner) banner.replaceWith(document.importNode(freshBanner, true));
    else if (banner) banner.remove();
    else if (freshBanner) document.querySelector('main.content').prepend(document.importNode(freshBanner, true));
  }

  // showError puts the API's message next to the field it names ("field: what is wrong", the
  // way the API words them), or else at the form's error line.
  function showError(el, err) {
    const scope = el.closest('form');
    if (scope && fieldError(scope, err)) return;
    const out = (scope && scope.querySelector('.form-error')) || document.getElementById('action-error');
    if (out) out.textContent = err.message; else alert(err.message);
  }

  function fieldError(form, err) {
    let field = err.field || (/^([a-z_][a-z0-9_.]*(?:\[\d+\][a-z0-9_.]*)*): /.exec(err.message) || [])[1];
    if (!field) return false;
    // "freezes[0].from: …" names an entry of the freezes field.
    if (!err.field && field.includes('[')) field = field.slice(0, field.indexOf('['));
    // Of same-named fields (a dialog's hosts of each environment) the one in use.
    const named = Array.from(form.querySelectorAll('[name="' + CSS.escape(field) + '"]'));
    let input = err.input || named.find(i => !i.disabled) || named[0];
    if (!input) {
      // "trigger: …" names a group of fields; "branches" may be trigger.branches.
      input = form.querySelector('[name^="' + CSS.escape(field) + '."]') || form.querySelector('[name$=".' + CSS.escape(field) + '"]');
    }
    if (!input) return false;
    const at = input.closest('fieldset') || input.closest('label') || input;
    let out = at.nextElementSibling;
    if (!out || !out.classList.contains('field-error')) {
      out = document.createElement('span');
      out.className = 'field-error error';
      out.setAttribute('role', 'alert');
      at.after(out);
    }
    out.dataset.for = input.name || input.id;
    out.textContent = err.message;
    input.setAttribute('aria-invalid', 'true');
    input.focus();
    return true;
  }

  function clearErrors(form) {
    form.querySelectorAll('.field-error').forEach(e => e.remove());
    form.querySelectorAll('[aria-invalid]').forEach(e => e.removeAttribute('aria-invalid'));
    const err = form.querySelector('.form-error');
    if (err) err.textContent = '';
  }

  // checkForm refuses what can be told before asking the API: data-same-as fields (a password
  // typed twice) and data-confirm-text fields (the name typed to confirm a delete).
  function checkForm(form) {
    form.querySelectorAll('[data-same-as]').forEach(function (el) {
      if (el.value !== document.querySelector(el.dataset.sameAs).value) {
        const e = new Error(el.dataset.sameError); e.field = el.id; e.input = el; throw e;
      }
    });
    form.querySelectorAll('[data-confirm-text]').forEach(function (el) {
      if (el.value.trim() !== el.dataset.confirmText) {
        const e = new Error(el.dataset.confirmError); e.field = el.id; e.input = el; throw e;
      }
    });
  }

  // Buttons with data-method and data-url call the API.
  document.addEventListener('click', async function (ev) {
    const el = ev.target.closest('button[data-url]');
    if (!el) return;
    ev.preventDefault();
    if (el.dataset.confirm && !confirm(el.dataset.confirm)) return;
    el.disabled = true;
    try {
      const data = el.dataset.body ? JSON.parse(el.dataset.body) : undefined;
      then(el, await api(el.dataset.method || 'POST', el.dataset.url, data));
    } catch (err) {
      showError(el, err);
    } finally {
      el.disabled = false;
    }
  });

  // formData turns a form into a JSON object: "a.b" names nest, data-int fields are numbers,
  // data-bool checkboxes are booleans, data-list checkboxes gather into an array; empty values
  // and the csrf_token field are left out.
  function formData(form) {
    const out = {};
    for (const el of form.elements) {
      if (!el.name || el.name === 'csrf_token' || el.disabled) continue;
      if (el.type === 'radio' && !el.checked) continue;
      let value;
      if (el.type === 'checkbox') {
        if ('bool' in el.dataset) value = el.checked;
        else if ('list' in el.dataset) { if (!el.checked) { ensureList(out, el.name); continue; } value = el.value; }
        else if (!el.checked) continue;
        else value = el.value;
      } else {
        value = el.value.trim();
        if (value === '') continue;
        if ('int' in el.dataset) value = parseInt(value, 10);
        if ('json' in el.dataset) {
          try { value = JSON.parse(value); } catch (e) { const err = new Error(el.dataset.jsonError + ': ' + e.message); err.field = el.name; err.input = el; throw err; }
        }
      }
      put(out, el.name, value, 'list' in el.dataset);
    }
    return out;
  }
  function ensureList(obj, name) { if (!(name in obj)) obj[name] = []; }
  function put(obj, name, value, list) {
    const parts = name.split('.');
    let at = obj;
    for (const p of parts.slice(0, -1)) { at = at[p] = at[p] || {}; }
    const last = parts[parts.length - 1];
    if (list) { (at[last] = at[last] || []).push(value); } else { at[last] = value; }
  }

  // Forms with class "api" post their fields as JSON.
  document.addEventListener('submit', async function (ev) {
    const form = ev.target;
    if (!form.classList.contains('api')) return;
    ev.preventDefault();
    clearErrors(form);
    const button = form.querySelector('button[type=submit]');
    if (button) button.disabled = true;
    try {
      checkForm(form);
      let data = formData(form);
      if (form.dataset.shape) data = shapes[form.dataset.shape](form, data);
      if (form.classList.contains('deploy-form')) data = deployBody(form, data);
      // A submit button may post elsewhere than its form (approve and reject share a comment).
      const url = (ev.submitter && ev.submitter.dataset.action) || form.dataset.url;
      then(form, await api(form.dataset.method || 'POST', url, data));
    } catch (e) {
      showError(form, e);
    } finally {
      if (button) button.disabled = false;
    }
  });

  // shapes turn a form's fields into the body its API call wants, by data-shape.
  const shapes = {
    // project: branches one per line or comma, the auto-deploy map as "branch = environment"
    // lines; an emptied list is sent as empty, so it can be cleared.
    project: function (form, data) {
      const trig = form.querySelector('[name="trigger.keyword"]');
      if (!trig) return data;
      const t = data.trigger || {};
      t.keyword = form.querySelector('[name="trigger.keyword"]').value.trim();
      t.branches = splitList(form.querySelector('[name="trigger.branches"]').value);
      t.tags = form.querySelector('[name="trigger.tags"]').checked;
      const deploy = {};
      for (const line of form.querySelector('[name="trigger.deploy"]').value.split('\n')) {
        if (!line.trim()) continue;
        const m = /^\s*(\S+)\s*(?:=|->|→|:)\s*(\S+)\s*$/.exec(line);
        if (!m) { const e = new Error(form.dataset.deployError + ': ' + line.trim()); e.field = 'trigger.deploy'; throw e; }
        deploy[m[1]] = m[2];
      }
      t.deploy = deploy;
      data.trigger = t;
      if (!('tag_template' in data)) data.tag_template = '';
      return data;
    },
    // channel: recipients one per line or comma, sent only for email (and then even when
    // emptied, so they can be cleared); an empty secret leaves the stored one.
    channel: function (form, data) {
      const kind = form.querySelector('[name=kind]').value;
      const rec = form.querySelector('[name=recipients]');
      if (kind === 'email') data.recipients = splitList(rec.value); else delete data.recipients;
      if (!('keyword' in data) && form.dataset.method === 'PATCH') data.keyword = '';
      if (!('format' in data) && form.dataset.method === 'PATCH') data.format = '';
      return data;
    },
    // environment: the strategy is sent whole, so that choosing serial (an empty kind) or
    // clearing the batch takes effect.
    environment: function (form, data) {
      data.strategy = { kind: form.querySelector('[name="strategy.kind"]').value, batch: form.querySelector('[name="strategy.batch"]').value.trim() };
      return data;
    },
  };
  function splitList(text) { return text.split(/[\n,]/).map(x => x.trim()).filter(Boolean); }

  // ---- the deploy dialog ----

  // deployBody leaves out hosts when all are chosen (all hosts, in the environment's order).
  function deployBody(form, data) {
    const set = form.querySelector('fieldset.hosts-choice:not([hidden])');
    if (set) {
      const boxes = set.querySelectorAll('input[name=hosts]');
      const chosen = Array.from(boxes).filter(b => b.checked).length;
      if (chosen === 0) { const e = new Error(form.dataset.msgNoHosts); e.field = 'hosts'; e.input = boxes[0]; throw e; }
      if (chosen === boxes.length) delete data.hosts;
    }
    if (data.strategy && !data.strategy.kind) delete data.strategy;
    // "At a time" sends the local time picked as an RFC 3339 instant; "now" sends none.
    if (data.when === 'later' && data.scheduled_at) data.scheduled_at = new Date(data.scheduled_at).toISOString();
    else delete data.scheduled_at;
    delete data.when;
    if (!data.override_freeze) { delete data.override_freeze; delete data.reason; }
    return data;
  }

  function setupDeployForm(form) {
    const envSelect = form.querySelector('#deploy-env');
    const show = function () {
      const env = envSelect.value;
      form.querySelectorAll('[data-for-env]').forEach(function (el) {
        const mine = el.dataset.forEnv === env;
        el.hidden = !mine;
        el.querySelectorAll('input').forEach(i => { i.disabled = !mine; });
      });
      const opt = envSelect.selectedOptions[0];
      form.querySelector('#deploy-submit').disabled = opt && opt.dataset.allowed === 'false';
    };
    envSelect.addEventListener('change', show);
    form.addEventListener('change', function (ev) {
      const box = ev.target;
      const set = box.closest('fieldset.hosts-choice');
      if (!set) return;
      const hosts = set.querySelectorAll('input[name=hosts]');
      const all = set.querySelector('.all-hosts');
      if (box === all) hosts.forEach(h => { h.checked = all.checked; });
      else if (all) all.checked = Array.from(hosts).every(h => h.checked);
    });
    show();
    const changes = document.getElementById('ship-changes');
    if (changes) {
      const load = function () { loadChanges(changes, envSelect.value, form.querySelector('#deploy-version').value); };
      envSelect.addEventListener('change', load);
      form.querySelector('#deploy-version').addEventListener('change', load);
      load();
    }
  }

  // loadChanges fills a #ship-changes box (or a version page's list) with what deploying the
  // version changes: the version running now and the commits added or, for a rollback, taken
  // away. Its data-msg-* attributes hold the words.
  async function loadChanges(box, env, version) {
    const q = new URLSearchParams({ version: version });
    if (env) q.set('environment', env);
    box.dataset.state = 'loading';
    let ch;
    try {
      ch = await api('GET', box.dataset.url + '?' + q.toString());
    } catch (err) {
      box.replaceChildren(el('p', 'error', err.message));
      box.dataset.state = 'error';
      return;
    }
    const m = box.dataset;
    const out = [];
    const base = ch.running || ch.previous;
    out.push(el('p', 'running', base ? (ch.previous ? m.msgPrevious : m.msgRunning).replace('%s', base) : (env ? m.msgNothing : m.msgFirstVersion)));
    const words = { first: m.msgFirst, forward: m.msgForward, rollback: m.msgRollback, same: m.msgSame, other: m.msgOther };
    const head = el('p', 'direction ' + ch.direction, (words[ch.direction] || '').replace('%d', ch.commits.length));
    head.dataset.direction = ch.direction;
    out.push(head);
    if (ch.commits.length) {
      const list = el('ul', 'commits');
      ch.commits.forEach(function (c) {
        const li = el('li', 'commit');
        li.dataset.sha = c.sha;
        const sha = el('code', 'sha', c.sha.slice(0, 8));
        if (c.url) { const a = el('a', '', ''); a.href = c.url; a.append(sha); li.append(a); } else li.append(sha);
        li.append(' ', el('span', 'title', c.title), ' — ', el('span', 'author', c.author));
        list.append(li);
      });
      out.push(list);
    }
    if (ch.truncated) out.push(el('p', 'muted', m.msgMore));
    box.replaceChildren(...out);
    box.dataset.state = 'loaded';
    box.dataset.direction = ch.direction;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.textContent = text;
    return e;
  }

  // A version's "changes since the version before" load when their box is opened.
  document.addEventListener('toggle', function (ev) {
    const box = ev.target.open && ev.target.querySelector && ev.target.querySelector('.version-changes[data-version]');
    if (box && !box.dataset.state) loadChanges(box, '', box.dataset.version);
  }, true);
  // The version page shows them at once.
  const versionChanges = document.getElementById('version-changes');
  if (versionChanges) loadChanges(versionChanges, '', versionChanges.dataset.version);

  // ---- copy and reveal ----

  document.addEventListener('click', function (ev) {
    const copy = ev.target.closest('[data-copy]');
    if (copy) {
      const src = document.querySelector(copy.dataset.copy);
      const text = src.value !== undefined ? src.value : src.textContent;
      navigator.clipboard.writeText(text).then(function () {
        const was = copy.textContent;
        copy.textContent = body.dataset.msgCopied;
        setTimeout(function () { copy.textContent = was; }, 1500);
      });
    }
    // data-generate-token fills its input with a new webhook signing token (whsec_ and the
    // base64 of 32 random bytes, as GitLab wants) and shows it, to be saved and given to GitLab.
    const gen = ev.target.closest('[data-generate-token]');
    if (gen) {
      const input = document.querySelector(gen.dataset.generateToken);
      const key = new Uint8Array(32);
      crypto.getRandomValues(key);
      input.value = 'whsec_' + btoa(String.fromCharCode.apply(null, key));
      input.type = 'text';
    }
    const reveal = ev.target.closest('[data-reveal]');
    if (reveal) {
      const input = document.querySelector(reveal.dataset.reveal);
      input.type = input.type === 'password' ? 'text' : 'password';
    }
  });

  // ---- status words ----

  function setStatus(el, status) {
    if (!el) return;
    el.className = el.className.replace(/\bst-\S+/g, '').trim() + ' st-' + status;
    el.textContent = labels[status] || status;
    el.dataset.status = status;
  }

  // ---- live log ----

  // LiveLog shows a job's log as it is written: it reads the stream from the last line the
  // page has, follows the end unless the reader scrolled up (scroll lock), and reconnects
  // from its last seq when the connection drops or the server dropped it for being slow.
  function LiveLog(el) {
    let after = parseInt(el.dataset.after || '0', 10);
    let ended = false;
    let retry = 500;
    const follow = document.getElementById('follow');
    const state = document.getElementById('logstate');
    const empty = document.getElementById('log-empty');

    function atBottom() { return el.scrollHeight - el.scrollTop - el.clientHeight < 24; }
    el.addEventListener('scroll', function () { if (follow) follow.checked = atBottom(); });
    if (follow) follow.addEventListener('change', function () { if (follow.checked) el.scrollTop = el.scrollHeight; });
    if (follow && follow.checked) el.scrollTop = el.scrollHeight;

    function append(lines) {
      const frag = document.createDocumentFragment();
      for (const l of lines) {
        if (l.seq <= after) continue;
        after = l.seq;
        const div = document.createElement('div');
        div.className = 'line s-' + l.stream;
        div.dataset.seq = l.seq;
        if (l.host) {
          const h = document.createElement('span');
          h.className = 'host';
          h.textContent = l.host;
          div.append(h, ' ');
        }
        const t = document.createElement('span');
        t.className = 'text';
        t.textContent = l.text;
        div.append(t);
        frag.append(div);
      }
      if (!frag.childNodes.length) return;
      if (empty) empty.hidden = true;
      el.append(frag);
      if (follow && follow.checked) el.scrollTop = el.scrollHeight;
    }

    function connect() {
      const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
      let url = scheme + location.host + el.dataset.stream + '?after=' + after;
      if (el.dataset.host) url += '&host=' + encodeURIComponent(el.dataset.host);
      const ws = new WebSocket(url);
      ws.onopen = function () { retry = 500; if (state) state.textContent = ''; };
      ws.onmessage = function (ev) {
        const m = parseJSON(ev.data);
        if (!m) return;
        if (m.type === 'lines') append(m.lines || []);
        else if (m.type === 'end') { ended = true; setStatus(document.getElementById('job-status'), m.status); jobEnded(m.status); ws.close(); }
        else if (m.type === 'dropped' && m.last_seq > after) after = m.last_seq;
      };
      ws.onclose = function () {
        if (ended) return;
        if (state) state.textContent = body.dataset.msgReconnecting;
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 10000);
      };
    }
    connect();
  }

  // jobEnded hides the cancel button and, for a deployment, offers a retry.
  function jobEnded(status) {
    const cancel = document.getElementById('cancel');
    if (cancel) cancel.hidden = true;
    const retry = document.getElementById('retry');
    if (retry && (status === 'failed' || status === 'canceled')) retry.hidden = false;
  }

  // ---- deployment progress ----

  function sizeText(n) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n + ' B' : n.toFixed(1) + ' ' + units[i];
  }

  // pollDeployment refreshes the host rows every second while the deployment runs.
  function pollDeployment(el) {
    const url = el.dataset.poll;
    async function tick() {
      let d;
      try { d = await api('GET', url); } catch (e) { setTimeout(tick, 3000); return; }
      for (const h of d.hosts || []) {
        const row = document.querySelector('tr[data-host="' + CSS.escape(h.host) + '"]');
        if (!row) continue;
        setStatus(row.querySelector('[data-field=status]'), h.status);
        row.querySelector('[data-field=step]').textContent = h.step || '';
        row.querySelector('[data-field=error]').textContent = h.error || '';
        const pct = h.bytes_total > 0 ? Math.min(100, Math.floor(h.bytes_sent * 100 / h.bytes_total)) : 0;
        const bar = row.querySelector('[data-field=progress]');
        bar.value = pct;
        bar.textContent = pct + '%';
        row.querySelector('[data-field=bytes]').textContent = h.bytes_total > 0 ? sizeText(h.bytes_sent) + ' / ' + sizeText(h.bytes_total) : '';
      }
      setStatus(document.getElementById('job-status'), d.status);
      const waiting = document.getElementById('waiting');
      if (waiting) waiting.textContent = d.waiting_for || '';
      if (d.status === 'queued' || d.status === 'running') setTimeout(tick, 1000);
      else if (d.status === 'awaiting_approval' || d.status === 'scheduled') setTimeout(tick, 5000);
      else jobEnded(d.status);
    }
    setTimeout(tick, 1000);
  }

  // ---- refreshing parts of a page ----

  // Elements with an id and data-refresh="ms" are replaced with the same element of a fresh
  // copy of the page, so a grid of versions or a list of jobs stays current without a reload.
  function refresh(el) {
    const every = parseInt(el.dataset.refresh, 10);
    async function tick() {
      if (document.hidden) { setTimeout(tick, every); return; }
      try {
        const res = await fetch(location.href, { credentials: 'same-origin' });
        if (res.ok) {
          const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
          const fresh = doc.getElementById(el.id);
          if (fresh && fresh.innerHTML !== el.innerHTML) { el.innerHTML = fresh.innerHTML; el.dispatchEvent(new Event('ferry:refreshed')); }
        }
      } catch (e) { /* try again on the next tick */ }
      setTimeout(tick, every);
    }
    setTimeout(tick, every);
  }

  // A checkbox with data-disables="#x" disables #x while it is checked (a key ferry generates
  // instead of a pasted one).
  document.addEventListener('change', function (ev) {
    const box = ev.target.closest('input[data-disables]');
    if (!box) return;
    document.querySelectorAll(box.dataset.disables).forEach(function (el) { el.disabled = box.checked; });
  });

  // ---- build now: branches, tags and a branch's recent commits ----

  // The build form offers the remote's branches and tags (loaded when the ref field is first
  // used) and, for a branch, its recent commits to build one of them.
  function setupBuildForm(form) {
    const ref = form.querySelector('#build-ref');
    const sha = form.querySelector('#build-sha');
    const list = form.querySelector('#build-refs');
    let loaded = null, branches = [];
    const loadRefs = function () {
      if (loaded) return loaded;
      loaded = api('GET', form.dataset.refs).then(function (r) {
        branches = r.branches;
        list.replaceChildren(...r.branches.concat(r.tags).map(function (n) { const o = document.createElement('option'); o.value = n; return o; }));
        form.dataset.refsLoaded = 'true';
      }).catch(function (err) { form.dataset.refsError = err.message; });
      return loaded;
    };
    let shown = null;
    const loadCommits = async function () {
      if (ref.value.trim() === shown) return; // a change event on blur: the list is this ref's
      shown = ref.value.trim();
      await loadRefs();
      const latest = document.createElement('option');
      latest.value = ''; latest.textContent = form.dataset.msgLatest;
      sha.replaceChildren(latest);
      delete form.dataset.commitsFor;
      if (!branches.includes(ref.value.trim())) return;
      try {
        const commits = await api('GET', form.dataset.commits + '?branch=' + encodeURIComponent(ref.value.trim()));
        commits.forEach(function (c) {
          const o = document.createElement('option');
          o.value = c.sha;
          o.textContent = c.sha.slice(0, 8) + ' ' + c.title + ' — ' + c.author;
          sha.append(o);
        });
        form.dataset.commitsFor = ref.value.trim();
      } catch (err) { /* the mirror may not have it yet: build the branch's tip */ }
    };
    ref.addEventListener('focus', loadRefs);
    ref.addEventListener('change', loadCommits);
  }

  // ---- picking a GitLab project ----

  // The new project form searches GitLab's projects as one types; picking one fills the path,
  // the clone URL and, when empty, the name.
  function setupGitLabPick(box) {
    const input = box.querySelector('#gitlab-search');
    const results = box.querySelector('#gitlab-results');
    let timer = null, asked = '';
    const search = async function () {
      const q = input.value.trim();
      if (q === asked) return;
      asked = q;
      let found;
      try { found = await api('GET', box.dataset.url + '?search=' + encodeURIComponent(q)); } catch (err) {
        results.replaceChildren(el('li', 'error', err.message));
        return;
      }
      if (q !== asked) return;
      results.replaceChildren(...(found.length ? found.map(function (p) {
        const li = el('li', 'gitlab-project');
        const b = el('button', 'small secondary', p.path_with_namespace);
        b.type = 'button';
        b.dataset.path = p.path_with_namespace;
        b.addEventListener('click', function () {
          const form = box.closest('form');
          form.querySelector('#np-path').value = p.path_with_namespace;
          form.querySelector('#np-clone').value = p.http_url_to_repo;
          const name = form.querySelector('#np-name');
          if (!name.value.trim()) name.value = (p.name || p.path_with_namespace.split('/').pop()).toLowerCase().replace(/[^a-z0-9-]+/g, '-');
          results.replaceChildren();
        });
        li.append(b);
        return li;
      }) : [el('li', 'muted', box.dataset.msgNone)]));
      box.dataset.results = String(found.length);
    };
    input.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(search, 250); });
  }

  // ---- the live host grid ----

  // An environment of the grid with data-live-stream has a deployment running: the grid
  // follows it over that deployment's log stream (each message refreshes the grid, and every
  // second while it runs, for the upload's progress), so steps, progress and results show
  // without a reload. A refresh that shows a new running deployment follows that one too.
  const followed = new Set();
  let gridPending = false;
  function refreshGrid() {
    if (gridPending) return;
    gridPending = true;
    setTimeout(async function () {
      gridPending = false;
      const grid = document.getElementById('grid');
      if (!grid) return;
      try {
        const res = await fetch(location.href, { credentials: 'same-origin' });
        if (!res.ok) return;
        const fresh = new DOMParser().parseFromString(await res.text(), 'text/html').getElementById('grid');
        if (fresh && fresh.innerHTML !== grid.innerHTML) grid.innerHTML = fresh.innerHTML;
      } catch (e) { return; }
      followGrid();
    }, 200);
  }
  function followGrid() {
    document.querySelectorAll('#grid [data-live-stream]').forEach(function (sec) {
      const url = sec.dataset.liveStream;
      if (followed.has(url)) return;
      followed.add(url);
      let ended = false;
      const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
      const ws = new WebSocket(scheme + location.host + url + '?after=0');
      ws.onmessage = function (ev) {
        const m = parseJSON(ev.data);
        if (m && m.type === 'end') { ended = true; ws.close(); }
        refreshGrid();
      };
      ws.onclose = function () { ended = true; refreshGrid(); };
      (function tick() { if (!ended) { refreshGrid(); setTimeout(tick, 1000); } })();
    });
  }

  // ---- start ----

  document.querySelectorAll('#log[data-stream]').forEach(function (el) {
    if (el.dataset.live === 'true') LiveLog(el);
  });
  document.querySelectorAll('[data-poll]').forEach(function (el) { if (el.dataset.poll) pollDeployment(el); });
  document.querySelectorAll('[data-refresh][id]').forEach(refresh);
  if (document.getElementById('grid')) { followGrid(); document.getElementById('grid').addEventListener('ferry:refreshed', followGrid); }
  document.querySelectorAll('form.deploy-form').forEach(setupDeployForm);
  document.querySelectorAll('form.build-form').forEach(setupBuildForm);
  document.querySelectorAll('#gitlab-pick').forEach(setupGitLabPick);
})();

// The script editor (jobs page): line numbers beside the textarea, kept in step while typing
// and scrolling. And the run page: its host rows are refreshed every second while it runs.
(function () {
  'use strict';
  document.querySelectorAll('.editor').forEach(function (box) {
    const gutter = box.querySelector('.gutter');
    const area = box.querySelector('textarea');
    function number() {
      const n = area.value.split('\n').length;
      let text = '';
      for (let i = 1; i <= n; i++) text += i + '\n';
      gutter.textContent = text;
      gutter.scrollTop = area.scrollTop;
    }
    area.addEventListener('input', number);
    area.addEventListener('scroll', function () { gutter.scrollTop = area.scrollTop; });
    area.addEventListener('keydown', function (ev) {
      if (ev.key !== 'Tab') return;
      ev.preventDefault();
      const at = area.selectionStart;
      area.setRangeText('  ', at, area.selectionEnd, 'end');
      number();
    });
    number();
  });
  const run = document.getElementById('jobrun');
  if (!run || !run.dataset.poll) return;
  const first = run.dataset.status;
  async function tick() {
    let r;
    try {
      const res = await fetch(run.dataset.poll, { headers: { Accept: 'application/json' }, credentials: 'same-origin' });
      r = await res.json();
    } catch (e) { setTimeout(tick, 3000); return; }
    for (const s of r.steps || []) {
      for (const h of s.hosts || []) {
        const row = document.querySelector('tr[data-step="' + s.position + '"][data-host="' + CSS.escape(h.host) + '"]');
        if (!row) continue;
        const st = row.querySelector('[data-field=status]');
        st.textContent = h.status;
        st.className = 'status st-' + h.status;
        row.querySelector('[data-field=exit]').textContent = h.exit_code === null || h.exit_code === undefined ? '' : h.exit_code;
        row.querySelector('[data-field=error]').textContent = h.error || '';
        if (h.duration_ms !== undefined) row.querySelector('[data-field=took]').textContent = (h.duration_ms / 1000).toFixed(1) + 's';
      }
      const ss = document.querySelector('[data-step-status="' + s.position + '"]');
      if (ss) { ss.textContent = s.status; ss.className = 'status st-' + s.status; }
    }
    // A pause reached, or the end: the page's buttons change, so show it afresh.
    if (r.status !== first && r.status !== 'running') { location.reload(); return; }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
})();

// The deadline of a pending approval ("Awaiting approval until 14:05 UTC (in 23 min).") counts
// down while the page is open, in the page's words (handlers/pages_jobruns_deadline.go).
(function () {
  'use strict';
  const boxes = document.querySelectorAll('[data-until]');
  if (!boxes.length) return;
  function fill(pattern, args) {
    let i = 0;
    return pattern.replace(/%(0?)(\d*)([ds])/g, function (m, zero, width, verb) {
      const v = String(args[i++]);
      return verb === 'd' && zero ? v.padStart(parseInt(width, 10), '0') : v;
    });
  }
  function left(ms, w) {
    if (ms <= 0) return w.past;
    if (ms < 60000) return w.soon;
    const m = Math.round(ms / 60000);
    if (m < 60) return fill(w.min, [m]);
    if (m < 48 * 60) return fill(w.hours, [Math.floor(m / 60), m % 60]);
    return fill(w.days, [Math.floor(m / 1440), Math.floor((m % 1440) / 60)]);
  }
  function update() {
    boxes.forEach(function (box) {
      const at = Date.parse(box.dataset.until);
      const words = JSON.parse(box.dataset.words);
      box.querySelector('.until').textContent = fill(box.dataset.pattern, [box.dataset.when, left(at - Date.now(), words)]);
    });
  }
  update();
  setInterval(update, 10000);
})();
