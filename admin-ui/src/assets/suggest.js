// Gatehouse name suggestions: turns every field with `data-suggest` ("user" or "group") into
// a combobox that asks /.gatehouse/admin/suggest as the person types (debounced). Keyboard:
// Down/Up move through the list, Enter picks, Escape closes. A textarea (one name per line)
// completes the line the caret is on. `data-suggest-kind-from` names a <select> whose value
// is the kind; `data-suggest-app` the app whose owners may ask. Without this script the
// fields still work, with the <datalist> the page pre-filled.
(function () {
  'use strict';
  // A page may include the script more than once (each form that needs it).
  if (window.gatehouseSuggest) return;
  window.gatehouseSuggest = true;
  var DELAY = 200;

  function setup(field, n) {
    var multi = field.tagName === 'TEXTAREA';
    var listId = (field.id || 'suggest-' + n) + '-suggestions';
    var list = document.createElement('ul');
    list.id = listId;
    list.className = 'suggest-list';
    list.setAttribute('role', 'listbox');
    list.hidden = true;
    field.parentNode.classList.add('suggest-host');
    field.insertAdjacentElement('afterend', list);
    field.removeAttribute('list');
    field.setAttribute('role', 'combobox');
    field.setAttribute('aria-autocomplete', 'list');
    field.setAttribute('aria-expanded', 'false');
    field.setAttribute('aria-controls', listId);
    field.setAttribute('autocomplete', 'off');
    var timer = null, items = [], active = -1, seq = 0;

    function kind() {
      var from = field.getAttribute('data-suggest-kind-from');
      var sel = from && document.getElementById(from);
      var k = sel ? sel.value : field.getAttribute('data-suggest');
      return k === 'group' ? 'group' : 'user';
    }

    // [start, end) of the text being completed.
    function span() {
      if (!multi) return [0, field.value.length];
      var v = field.value, at = field.selectionStart || 0;
      var start = v.lastIndexOf('\n', at - 1) + 1;
      var end = v.indexOf('\n', at);
      return [start, end === -1 ? v.length : end];
    }

    function close() {
      list.hidden = true;
      list.textContent = '';
      items = [];
      active = -1;
      field.setAttribute('aria-expanded', 'false');
      field.removeAttribute('aria-activedescendant');
    }

    function mark(i) {
      active = i;
      Array.prototype.forEach.call(list.children, function (li, j) {
        li.setAttribute('aria-selected', j === i ? 'true' : 'false');
      });
      if (i >= 0) {
        field.setAttribute('aria-activedescendant', listId + '-' + i);
        list.children[i].scrollIntoView({ block: 'nearest' });
      } else {
        field.removeAttribute('aria-activedescendant');
      }
    }

    function pick(i) {
      var s = items[i];
      if (!s) return;
      var r = span(), v = field.value;
      field.value = v.slice(0, r[0]) + s.name + v.slice(r[1]);
      var caret = r[0] + s.name.length;
      field.setSelectionRange(caret, caret);
      close();
      field.dispatchEvent(new Event('change', { bubbles: true }));
    }

    function show(found) {
      list.textContent = '';
      items = found;
      active = -1;
      if (!found.length) { close(); return; }
      found.forEach(function (s, i) {
        var li = document.createElement('li');
        li.id = listId + '-' + i;
        li.setAttribute('role', 'option');
        li.setAttribute('aria-selected', 'false');
        li.setAttribute('data-name', s.name);
        var name = document.createElement('span');
        name.className = 'suggest-name';
        name.textContent = s.name;
        li.appendChild(name);
        var more = [s.detail].concat(s.sources).filter(Boolean).join(' · ');
        if (more) {
          var d = document.createElement('span');
          d.className = 'suggest-detail';
          d.textContent = more;
          li.appendChild(d);
        }
        li.addEventListener('mousedown', function (e) { e.preventDefault(); pick(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      field.setAttribute('aria-expanded', 'true');
    }

    function ask() {
      var r = span();
      var q = field.value.slice(r[0], r[1]).trim();
      if (!q) { close(); return; }
      var url = '/.gatehouse/admin/suggest?kind=' + kind() + '&q=' + encodeURIComponent(q);
      var app = field.getAttribute('data-suggest-app');
      if (app) url += '&app=' + encodeURIComponent(app);
      var mine = ++seq;
      fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
        .then(function (res) { return res.ok ? res.json() : { suggestions: [] }; })
        .then(function (body) { if (mine === seq && document.activeElement === field) show(body.suggestions || []); })
        .catch(function () { if (mine === seq) close(); });
    }

    field.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(ask, DELAY);
    });
    field.addEventListener('keydown', function (e) {
      if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
        if (list.hidden) { if (e.key === 'ArrowDown') { clearTimeout(timer); ask(); } return; }
        e.preventDefault();
        var n = items.length;
        mark(e.key === 'ArrowDown' ? (active + 1) % n : (active - 1 + n) % n);
      } else if (e.key === 'Enter' && !list.hidden && active >= 0) {
        e.preventDefault();
        pick(active);
      } else if (e.key === 'Escape' && !list.hidden) {
        e.preventDefault();
        close();
      }
    });
    field.addEventListener('blur', function () { setTimeout(close, 100); });
    var from = field.getAttribute('data-suggest-kind-from');
    var sel = from && document.getElementById(from);
    if (sel) sel.addEventListener('change', close);
  }

  Array.prototype.forEach.call(document.querySelectorAll('[data-suggest]'), setup);
})();
