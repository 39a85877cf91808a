// ferry: the variables editor (project, environment and host pages) and the rendered-config
// preview of the deploy dialog. Both talk to the JSON API with the session's CSRF token; a
// secret's value is never sent to the page, only whether there is one.
(function () {
  'use strict';

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : '';

  async function api(method, url, data) {
    const opts = { method: method, credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf, 'Accept': 'application/json' } };
    if (data !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(data);
    }
    const res = await fetch(url, opts);
    const text = await res.text();
    let answer = null;
    try { answer = text ? JSON.parse(text) : null; } catch (e) { answer = null; }
    if (!res.ok) throw new Error((answer && answer.error) || ('HTTP ' + res.status));
    return answer;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === 'className') e.className = attrs[k]; else e.setAttribute(k, attrs[k]);
    });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // VarsEditor fills a .vars-editor from GET data-url and saves it whole with PUT.
  function VarsEditor(box) {
    const L = box.dataset;
    const tbody = box.querySelector('tbody');
    const error = box.querySelector('.form-error');
    const saved = box.querySelector('.vars-saved');

    function addRow(name, v) {
      const tr = el('tr', { className: 'var-row' });
      const nameIn = el('input', { className: 'var-name', 'aria-label': L.lName, placeholder: 'PORT', pattern: '[A-Z_][A-Z0-9_]*' });
      nameIn.value = name || '';
      const valueIn = el('input', { className: 'var-value', 'aria-label': L.lValue, autocomplete: 'off' });
      const secretIn = el('input', { type: 'checkbox', className: 'var-secret', 'aria-label': L.lSecret });
      if (v && v.secret) {
        secretIn.checked = true;
        valueIn.type = 'password';
        valueIn.placeholder = L.lKeep;
        tr.dataset.hasSecret = 'true';
      } else if (v) {
        valueIn.value = v.value || '';
      }
      secretIn.addEventListener('change', function () { valueIn.type = secretIn.checked ? 'password' : 'text'; });
      const remove = el('button', { type: 'button', className: 'small secondary var-remove' }, L.lRemove);
      remove.addEventListener('click', function () { tr.remove(); });
      const secretLabel = el('label', { className: 'check' });
      secretLabel.append(secretIn, ' ' + L.lSecret);
      [nameIn, valueIn, secretLabel, remove].forEach(function (c) { const td = el('td'); td.append(c); tr.append(td); });
      tbody.append(tr);
    }

    function collect() {
      const out = {};
      tbody.querySelectorAll('tr.var-row').forEach(function (tr) {
        const name = tr.querySelector('.var-name').value.trim();
        if (!name) return;
        const value = tr.querySelector('.var-value').value;
        const secret = tr.querySelector('.var-secret').checked;
        if (secret && value === '' && tr.dataset.hasSecret === 'true') out[name] = { secret: true };
        else out[name] = { value: value, secret: secret };
      });
      return out;
    }

    function fill(vars) {
      tbody.textContent = '';
      Object.keys(vars || {}).sort().forEach(function (name) { addRow(name, vars[name]); });
      box.querySelector('.vars-none').hidden = Object.keys(vars || {}).length > 0;
    }

    box.querySelector('.var-add').addEventListener('click', function () {
      box.querySelector('.vars-none').hidden = true;
      addRow('', null);
    });
    box.querySelector('.var-save').addEventListener('click', async function () {
      error.textContent = '';
      tbody.querySelectorAll('.field-error').forEach(e => e.remove());
      tbody.querySelectorAll('[aria-invalid]').forEach(e => e.removeAttribute('aria-invalid'));
      saved.hidden = true;
      try {
        fill(await api('PUT', box.dataset.url, collect()));
        saved.hidden = false;
      } catch (err) {
        if (!rowError(err)) error.textContent = err.message;
      }
    });
    // rowError puts an error that names a variable ("variable NAME: …") next to its row's name.
    function rowError(err) {
      const m = /^variable "?([^":]+)"?: /.exec(err.message);
      const row = m && Array.from(tbody.querySelectorAll('tr.var-row')).find(tr => tr.querySelector('.var-name').value.trim() === m[1]);
      if (!row) return false;
      const name = row.querySelector('.var-name');
      const out = el('span', { className: 'field-error error', role: 'alert' }, err.message);
      out.dataset.for = m[1];
      name.after(out);
      name.setAttribute('aria-invalid', 'true');
      name.focus();
      return true;
    }
    api('GET', box.dataset.url).then(fill).catch(function (err) { error.textContent = err.message; });
  }

  // setupPreview makes the deploy dialog's preview button render the chosen version's config
  // for the first chosen host of the chosen environment.
  function setupPreview(button) {
    const form = button.closest('form');
    const out = document.getElementById('config-preview');
    const error = out.querySelector('.form-error');
    const files = out.querySelector('.preview-files');
    button.addEventListener('click', async function () {
      const env = form.querySelector('#deploy-env').value;
      const version = form.querySelector('#deploy-version').value;
      const checked = form.querySelector('[data-for-env="' + CSS.escape(env) + '"] input[name="hosts"]:checked');
      let url = button.dataset.url.replace('{version}', encodeURIComponent(version)) + '?environment=' + encodeURIComponent(env);
      if (checked) url += '&host=' + encodeURIComponent(checked.value);
      error.textContent = '';
      files.textContent = '';
      out.hidden = false;
      try {
        const p = await api('GET', url);
        out.querySelector('.preview-host').textContent = button.dataset.lFor.replace('%s', p.host).replace('%s', p.version);
        if (!p.files.length) files.append(el('p', { className: 'empty' }, button.dataset.lNone));
        p.files.forEach(function (f) {
          files.append(el('h3', { className: 'preview-path' }, f.path + '  (' + f.mode + ', ' + f.template + ')'));
          files.append(el('pre', { className: 'preview-content' }, f.content));
        });
      } catch (err) {
        error.textContent = err.message;
      }
    });
  }

  document.querySelectorAll('.vars-editor').forEach(VarsEditor);
  document.querySelectorAll('#config-preview-open').forEach(setupPreview);
})();
