// The App Portal in the browser: search and tag filter without a reload (the same rules as
// the server's ?q=/&tag= fallback: every word somewhere in the card's data-search, the tag
// whole), and favourites saved with the card's own form, then moved in place. Without this
// script every form and link still works.
(function () {
  'use strict';
  var search = document.getElementById('app-search');
  var lists = [document.getElementById('favourites'), document.getElementById('apps')];
  if (!search || !lists[0] || !lists[1]) return;
  var cards = function () { return Array.prototype.slice.call(document.querySelectorAll('li.app')); };
  var chips = Array.prototype.slice.call(document.querySelectorAll('.tag-filter a.chip'));
  var status = document.getElementById('filter-status');
  var noMatch = document.getElementById('no-match');
  var recent = document.getElementById('recent');
  var othersHeading = document.getElementById('others-h');
  var current = chips.filter(function (c) { return c.getAttribute('aria-current') === 'true'; })[0];
  var tag = current ? current.getAttribute('data-tag') : '';

  function sectionOf(list) { return list.parentNode; }

  function apply() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var all = cards(), shown = 0;
    all.forEach(function (li) {
      var text = li.getAttribute('data-search');
      var tags = li.getAttribute('data-tags').split('\n');
      var hit = (!tag || tags.indexOf(tag) !== -1) &&
        words.every(function (w) { return text.indexOf(w) !== -1; });
      li.hidden = !hit;
      if (hit) shown++;
    });
    var filtering = words.length > 0 || tag !== '';
    lists.forEach(function (list) {
      var any = Array.prototype.some.call(list.children, function (li) { return !li.hidden; });
      sectionOf(list).hidden = !any;
    });
    othersHeading.classList.toggle('visually-hidden', lists[0].children.length === 0);
    if (recent) recent.hidden = filtering;
    noMatch.hidden = shown !== 0 || all.length === 0;
    status.textContent = filtering ? shown + ' of ' + all.length + ' apps shown' : '';
    chips.forEach(function (c) {
      if (c.getAttribute('data-tag') === tag) c.setAttribute('aria-current', 'true');
      else c.removeAttribute('aria-current');
    });
    var tagField = search.form.querySelector('input[name="tag"]');
    if (tagField) tagField.value = tag;
    var params = new URLSearchParams();
    if (search.value.trim()) params.set('q', search.value.trim());
    if (tag) params.set('tag', tag);
    var qs = params.toString();
    history.replaceState(null, '', qs ? '/?' + qs : '/');
  }

  function setTag(t) {
    tag = t;
    if (!search.form.querySelector('input[name="tag"]')) {
      var f = document.createElement('input');
      f.type = 'hidden'; f.name = 'tag';
      search.form.appendChild(f);
    }
    apply();
  }

  search.addEventListener('input', apply);
  search.form.addEventListener('submit', function (e) { e.preventDefault(); apply(); });
  search.addEventListener('keydown', function (e) {
    if (e.key === 'Escape' && search.value) { search.value = ''; apply(); }
  });
  document.addEventListener('keydown', function (e) {
    var t = e.target;
    var typing = t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.isContentEditable);
    if (e.key === '/' && !typing && !e.ctrlKey && !e.metaKey && !e.altKey) {
      e.preventDefault();
      search.focus();
    }
  });
  document.addEventListener('click', function (e) {
    var a = e.target.closest && e.target.closest('a.chip, a.tag, #clear-filter');
    if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    if (a.id === 'clear-filter') { search.value = ''; setTag(''); return; }
    var t = a.classList.contains('chip') ? a.getAttribute('data-tag') : a.textContent.trim().toLowerCase();
    setTag(t === tag && !a.classList.contains('chip') ? '' : t);
  });

  // Favourites: the card's form, sent in the background, the card moved to its place.
  function place(li, list) {
    var pos = Number(li.getAttribute('data-pos'));
    var before = Array.prototype.filter.call(list.children, function (other) {
      return other !== li && Number(other.getAttribute('data-pos')) > pos;
    })[0];
    list.insertBefore(li, before || null);
  }

  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (!form.classList || !form.classList.contains('fav')) return;
    e.preventDefault();
    var button = form.querySelector('button');
    var next = form.querySelector('input[name="favourite"]');
    button.disabled = true;
    fetch(form.action, {
      method: 'POST',
      body: new URLSearchParams(new FormData(form)),
      headers: { 'Accept': 'application/json' },
      credentials: 'same-origin'
    }).then(function (res) {
      if (!res.ok) throw new Error('status ' + res.status);
      return res.json();
    }).then(function (r) {
      var li = form.closest('li.app');
      var name = li.querySelector('.app-name').textContent;
      next.value = r.favourite ? '0' : '1';
      button.setAttribute('aria-pressed', String(r.favourite));
      var label = r.favourite ? 'Remove from favourites:' : 'Add to favourites:';
      button.setAttribute('aria-label', label + ' ' + name);
      button.title = label;
      button.firstElementChild.textContent = r.favourite ? '\u2605' : '\u2606';
      place(li, r.favourite ? lists[0] : lists[1]);
      button.disabled = false;
      apply();
      button.focus();
    }).catch(function () {
      // Let the browser send the form itself: it shows the error page, or the portal.
      button.disabled = false;
      HTMLFormElement.prototype.submit.call(form);
    });
  });
})();
