// ferry: the jobs page's structured job editor. It builds the same body as the JSON API takes
// (POST /api/v1/projects/{project}/jobs): parameters with defaults, and steps that can be
// added, removed and reordered; a toggle shows that body as JSON to edit by hand. An error the
// API names by field ("steps[1].account: …") is shown next to that step's field.
(function () {
  'use strict';

  const form = document.getElementById('job-form');
  if (!form) return;
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';
  const params = form.querySelector('.param-rows');
  const steps = form.querySelector('.step-rows');
  const jsonBox = form.querySelector('#job-json');
  const jsonText = jsonBox.querySelector('textarea');
  const structured = form.querySelector('#job-structured');
  const toggle = form.querySelector('#job-json-toggle');

  function fromTemplate(id) {
    return document.getElementById(id).content.firstElementChild.cloneNode(true);
  }
  function f(row, name) { return row.querySelector('[data-f="' + name + '"]'); }

  function addParam(p) {
    const row = fromTemplate('param-template');
    f(row, 'name').value = (p && p.name) || '';
    f(row, 'default').value = (p && p.default) || '';
    params.appendChild(row);
    return row;
  }

  function addStep(s) {
    s = s || { kind: 'script', target: {} };
    const row = fromTemplate('step-template');
    for (const k of ['name', 'script', 'version', 'file', 'path', 'account', 'timeout']) f(row, k).value = s[k] || '';
    f(row, 'kind').value = s.kind || 'script';
    f(row, 'script_version').value = s.script_version || '';
    f(row, 'batch').value = s.batch || '';
    f(row, 'on_failure').value = s.on_failure || 'stop';
    const t = s.target || {};
    if (t.hosts && t.hosts.length) { f(row, 'target_kind').value = 'hosts'; f(row, 'target').value = t.hosts.join(', '); }
    else if (t.label) { f(row, 'target_kind').value = 'label'; f(row, 'target').value = t.label; }
    else { f(row, 'target_kind').value = 'environment'; f(row, 'target').value = t.environment || ''; }
    f(row, 'params').value = Object.entries(s.params || {}).map(([k, v]) => k + '=' + v).join('\n');
    steps.appendChild(row);
    showKind(row);
    return row;
  }

  // showKind shows only the fields of a step's kind.
  function showKind(row) {
    const kind = f(row, 'kind').value;
    row.querySelectorAll('[data-kinds]').forEach(function (el) {
      el.hidden = !el.dataset.kinds.split(' ').includes(kind);
    });
    const tk = f(row, 'target_kind').value;
    f(row, 'target').setAttribute('list', tk === 'environment' ? 'dl-envs' : '');
  }

  // body reads the form into the API's body; a bad line of parameter values throws an error
  // naming its field.
  function body() {
    const out = { name: form.elements.name.value.trim(), description: form.elements.description.value.trim(), params: [], steps: [] };
    params.querySelectorAll('.param-row').forEach(function (row) {
      const name = f(row, 'name').value.trim();
      if (name) out.params.push({ name: name, default: f(row, 'default').value });
    });
    steps.querySelectorAll('.step-row').forEach(function (row, i) { out.steps.push(stepOf(row, i)); });
    return out;
  }

  function stepOf(row, i) {
    const kind = f(row, 'kind').value;
    const s = { name: f(row, 'name').value.trim(), kind: kind, on_failure: f(row, 'on_failure').value };
    const timeout = f(row, 'timeout').value.trim();
    if (timeout) s.timeout = timeout;
    const batch = parseInt(f(row, 'batch').value, 10);
    if (batch) s.batch = batch;
    if (kind === 'pause') return s;
    s.account = f(row, 'account').value.trim();
    const tv = f(row, 'target').value.trim();
    const tk = f(row, 'target_kind').value;
    s.target = {};
    if (tk === 'hosts') s.target.hosts = tv.split(/[\s,]+/).filter(Boolean);
    else s.target[tk] = tv;
    if (kind === 'script') {
      s.script = f(row, 'script').value.trim();
      const v = parseInt(f(row, 'script_version').value, 10);
      if (v) s.script_version = v;
      const ps = {};
      for (const line of f(row, 'params').value.split('\n')) {
        if (!line.trim()) continue;
        const at = line.indexOf('=');
        if (at < 1) {
          const e = new Error('steps[' + i + '].params: ' + form.dataset.badLine + ': ' + line.trim());
          throw e;
        }
        ps[line.slice(0, at).trim()] = line.slice(at + 1);
      }
      if (Object.keys(ps).length) s.params = ps;
    } else {
      for (const k of ['version', 'file', 'path']) {
        const v = f(row, k).value.trim();
        if (v) s[k] = v;
      }
    }
    return s;
  }

  function fill(job) {
    form.elements.name.value = job.name || '';
    form.elements.description.value = job.description || '';
    params.replaceChildren();
    steps.replaceChildren();
    (job.params || []).forEach(addParam);
    (job.steps || []).forEach(addStep);
  }

  function jsonMode() { return !jsonBox.hidden; }

  toggle.addEventListener('click', function () {
    clearErrors();
    try {
      if (jsonMode()) {
        fill(JSON.parse(jsonText.value));
        jsonBox.hidden = true; structured.hidden = false;
        toggle.textContent = toggle.dataset.jsonLabel;
      } else {
        jsonText.value = JSON.stringify(body(), null, 2);
        jsonBox.hidden = false; structured.hidden = true;
        toggle.textContent = toggle.dataset.formLabel;
      }
    } catch (e) { showError(e); }
  });

  form.addEventListener('click', function (ev) {
    const b = ev.target.closest('[data-do]');
    if (!b) return;
    const row = b.closest('.step-row, .param-row');
    switch (b.dataset.do) {
      case 'remove-param': case 'remove-step': row.remove(); break;
      case 'up': if (row.previousElementSibling) row.parentNode.insertBefore(row, row.previousElementSibling); break;
      case 'down': if (row.nextElementSibling) row.parentNode.insertBefore(row.nextElementSibling, row); break;
    }
  });
  form.addEventListener('change', function (ev) {
    const row = ev.target.closest('.step-row');
    if (row && (ev.target.dataset.f === 'kind' || ev.target.dataset.f === 'target_kind')) showKind(row);
  });
  document.getElementById('add-param').addEventListener('click', function () { addParam().querySelector('input').focus(); });
  document.getElementById('add-step').addEventListener('click', function () { addStep().querySelector('input').focus(); });

  // Edit on a job's card loads it into the editor.
  document.addEventListener('click', async function (ev) {
    const b = ev.target.closest('button.edit-job');
    if (!b) return;
    try {
      const job = await call('GET', '/api/v1/jobs/' + encodeURIComponent(b.dataset.jobId));
      fill(job);
      if (jsonMode()) jsonText.value = JSON.stringify(body(), null, 2);
      const det = document.getElementById('job-editor');
      det.open = true;
      det.scrollIntoView();
    } catch (e) { showError(e); }
  });

  form.addEventListener('submit', async function (ev) {
    ev.preventDefault();
    clearErrors();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      let data;
      if (jsonMode()) {
        try { data = JSON.parse(jsonText.value); } catch (e) { throw new Error('json: ' + e.message); }
      } else {
        data = body();
      }
      await call('POST', form.dataset.url, data);
      location.reload();
    } catch (e) {
      showError(e);
    } finally {
      button.disabled = false;
    }
  });

  async function call(method, url, data) {
    const opts = { method: method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf, 'Accept': 'application/json' } };
    if (data !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(data); }
    const res = await fetch(url, opts);
    const text = await res.text();
    let answer = null;
    try { answer = text ? JSON.parse(text) : null; } catch (e) { answer = null; }
    if (!res.ok) throw new Error((answer && answer.error) || ('HTTP ' + res.status));
    return answer;
  }

  function clearErrors() {
    form.querySelectorAll('.field-error').forEach(e => e.remove());
    form.querySelector('.form-error').textContent = '';
  }

  // showError puts "steps[1].account: …" next to step 2's account field, "params[0].name: …"
  // next to the first parameter's name, "name: …" next to the job's name; else at the form's
  // error line.
  function showError(err) {
    const msg = err.message || String(err);
    const m = /^(steps|params)\[(\d+)\](?:\.([a-z_]+))?[.a-zA-Z0-9_]*: /.exec(msg) || /^(name|description|json|steps|params)(): /.exec(msg);
    let input = null;
    if (m && !jsonMode()) {
      if (m[2] === '') input = m[1] === 'name' || m[1] === 'description' ? form.elements[m[1]] : form.querySelector('#job-' + m[1] + ' legend');
      else {
        const rows = form.querySelectorAll(m[1] === 'steps' ? '.step-row' : '.param-row');
        const row = rows[parseInt(m[2], 10)];
        if (row) input = (m[3] && f(row, m[3] === 'target' ? 'target' : m[3])) || row.querySelector('input');
      }
    }
    if (!input) {
      form.querySelector('.form-error').textContent = msg;
      return;
    }
    const at = input.closest('label') || input;
    const out = document.createElement('span');
    out.className = 'field-error error';
    out.setAttribute('role', 'alert');
    out.textContent = msg;
    at.after(out);
    if (input.focus) input.focus();
  }

  // The file form sends the chosen file as the raw body of a PUT, so the browser streams it
  // and files up to the store's limit fit (a JSON body is capped at 1 MiB).
  const fileForm = document.getElementById('file-form');
  if (fileForm) {
    const pick = fileForm.elements.file, named = fileForm.elements.name;
    pick.addEventListener('change', function () { if (pick.files[0] && !named.value) named.value = pick.files[0].name; });
    fileForm.addEventListener('submit', async function (ev) {
      ev.preventDefault();
      const out = fileForm.querySelector('.form-error');
      out.textContent = '';
      const file = pick.files[0];
      if (!file) return;
      const button = fileForm.querySelector('button[type=submit]');
      button.disabled = true;
      try {
        const res = await fetch(fileForm.dataset.url + encodeURIComponent(named.value.trim() || file.name), {
          method: 'PUT', credentials: 'same-origin', body: file,
          headers: { 'X-CSRF-Token': csrf, 'Accept': 'application/json', 'Content-Type': 'application/octet-stream' },
        });
        if (!res.ok) {
          let answer = null;
          try { answer = await res.json(); } catch (e) { answer = null; }
          throw new Error((answer && answer.error) || ('HTTP ' + res.status));
        }
        location.reload();
      } catch (e) {
        out.textContent = e.message;
      } finally {
        button.disabled = false;
      }
    });
  }

  if (!steps.children.length) { addParam(); addStep(); } // an empty parameter row (left out while its name is empty) and one step
})();
