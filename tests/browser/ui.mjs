// Drives Debian's headless Chromium through Gatehouse's sign-in, App Portal and error pages,
// checks layout basics (no horizontal scroll at 375 px and 1280 px, a centred login card,
// visible keyboard focus), and saves full-page screenshots.
//
//   node ui.mjs --base http://127.0.0.1:8080 [--admin-password PW] [--viewer-password PW]
//               [--screenshots DIR]
//
// Passwords may also come from GATEHOUSE_ADMIN_PASSWORD / GATEHOUSE_VIEWER_PASSWORD and the
// base URL from GATEHOUSE_URL. Screenshots go to tests/artifacts/screenshots by default.
// Exits 0 when every check passed, 1 with "FAIL: <check>" otherwise, 2 on bad usage.
//
// Run by tests/e2e/browser.rs against `gatehouse demo`; set up with tests/peers/browser.sh.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

const { values: opts } = parseArgs({
  options: {
    base: { type: 'string' },
    'admin-password': { type: 'string' },
    'viewer-password': { type: 'string' },
    screenshots: { type: 'string' },
  },
});
const base = (opts.base ?? process.env.GATEHOUSE_URL ?? '').replace(/\/+$/, '');
const adminPassword = opts['admin-password'] ?? process.env.GATEHOUSE_ADMIN_PASSWORD;
const viewerPassword = opts['viewer-password'] ?? process.env.GATEHOUSE_VIEWER_PASSWORD;
// The app owner's account is created by the run itself, in the admin UI.
const ownerPassword = 'owner-pass-' + Math.random().toString(36).slice(2, 12);
const shots = resolve(opts.screenshots ?? join(here, '..', 'artifacts', 'screenshots'));
if (!base || !adminPassword || !viewerPassword) {
  console.error(
    'usage: node ui.mjs --base URL --admin-password PW --viewer-password PW [--screenshots DIR]\n' +
      '       (or GATEHOUSE_URL, GATEHOUSE_ADMIN_PASSWORD, GATEHOUSE_VIEWER_PASSWORD)',
  );
  process.exit(2);
}

const CHROMIUM = process.env.GATEHOUSE_CHROMIUM ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const DESKTOP = { width: 1280, height: 800 };
const MOBILE = { width: 375, height: 740 };

class CheckFailed extends Error {}

let step = 'starting';
let checks = 0;
/** Fails the run with `what` (and `detail`) unless `ok`. */
function check(ok, what, detail) {
  checks += 1;
  if (!ok) {
    throw new CheckFailed(detail === undefined ? what : `${what}\n      got: ${fmt(detail)}`);
  }
}
function fmt(v) {
  return typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v, null, 0);
}
function log(msg) {
  console.log(`  ok  ${msg}`);
}

const url = (path) => `${base}${path}`;
const pathOf = (page) => {
  const u = new URL(page.url());
  return u.pathname + u.search;
};

/** Goes to `path` and returns the HTTP status. */
async function open(page, path) {
  const res = await page.goto(url(path), { waitUntil: 'load' });
  return res ? res.status() : 0;
}

/** Hrefs of the visible app cards on the portal (favourites first, then the rest). */
async function visibleApps(page, list = '#favourites .app, #apps .app') {
  return page.$$eval(list, (items) =>
    items
      .filter((li) => !li.hidden && li.offsetParent !== null)
      .map((li) => li.querySelector('a.app-link').getAttribute('href')),
  );
}

/** Checks that nothing scrolls sideways at the current width. */
async function noHorizontalScroll(page, where) {
  const m = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
    body: document.body.scrollWidth,
  }));
  check(
    m.scroll <= m.client && m.body <= m.client,
    `${where}: no horizontal scroll at ${m.client}px`,
    m,
  );
}

/** Checks layout at both widths and saves a full-page screenshot at each requested one. */
async function shoot(page, name, { desktop = true, mobile = false } = {}) {
  for (const [kind, size, save] of [
    ['mobile', MOBILE, mobile],
    ['desktop', DESKTOP, desktop],
  ]) {
    await page.setViewportSize(size);
    await noHorizontalScroll(page, `${name} (${kind})`);
    if (save) {
      const file = desktop && mobile ? `${name}-${kind}.png` : `${name}.png`;
      const png = await page.screenshot({ path: join(shots, file), fullPage: true });
      // Not blank: the page shows text, and the image is more than one flat colour (a blank
      // page compresses to a few hundred bytes).
      const text = await page.evaluate(() => document.body.innerText.trim().length);
      check(text > 20 && png.length > 8000, `${name} (${kind}): the screenshot is not blank`, { text, bytes: png.length });
    }
  }
  await page.setViewportSize(DESKTOP);
}

/** Describes the focus indicator of the focused element; null when nothing shows. */
async function focusRing(page) {
  return page.evaluate(() => {
    const el = document.activeElement;
    if (!el || el === document.body) return { none: 'nothing is focused' };
    const s = getComputedStyle(el);
    const width = parseFloat(s.outlineWidth) || 0;
    const outline = s.outlineStyle !== 'none' && width >= 2 && s.outlineColor !== 'rgba(0, 0, 0, 0)';
    const shadow = s.boxShadow !== 'none' && /\d+px/.test(s.boxShadow);
    return {
      el: el.id ? `#${el.id}` : `${el.tagName.toLowerCase()}${el.className ? '.' + String(el.className).split(' ').join('.') : ''}`,
      text: (el.innerText || el.value || '').trim().slice(0, 40),
      visible: outline || shadow,
      focusVisible: el.matches(':focus-visible'),
      outline: `${s.outlineStyle} ${s.outlineWidth} ${s.outlineColor}`,
      boxShadow: s.boxShadow,
    };
  });
}

const CONTROLS = 'a[href], button, input:not([type=hidden]), select, textarea';

/** Every visible, enabled control on the page, in document order (what Tab should reach),
 * each named by its place among the controls and the start of its HTML (two tag links
 * with the same text are two controls). */
async function controls(page) {
  return page.$$eval(CONTROLS, (els) =>
    els
      .map((el, i) => [el, `${i}: ${el.outerHTML.slice(0, 80)}`])
      .filter(([el]) => !el.disabled && el.offsetParent !== null && el.tabIndex >= 0)
      .map(([, key]) => key),
  );
}

/** Tabs through the page from the top: every control gets focus with a visible ring. */
async function keyboardPath(page, where) {
  const want = await controls(page);
  // Start before the first control, as after a fresh load: focus a temporary, untabbable
  // marker at the top of the body (blur alone keeps the old sequential-focus point).
  await page.evaluate(() => {
    const start = document.createElement('span');
    start.id = '__tab_start';
    start.tabIndex = -1;
    document.body.prepend(start);
    start.focus();
  });
  const seen = [];
  for (let i = 0; i < want.length + 3; i += 1) {
    await page.keyboard.press('Tab');
    const info = await page.evaluate((sel) => {
      const el = document.activeElement;
      const i = Array.prototype.indexOf.call(document.querySelectorAll(sel), el);
      return el && el !== document.body ? `${i}: ${el.outerHTML.slice(0, 80)}` : null;
    }, CONTROLS);
    if (!info || seen.includes(info)) break;
    const ring = await focusRing(page);
    check(ring.visible && ring.focusVisible, `${where}: visible focus ring on ${ring.el} "${ring.text}"`, ring);
    seen.push(info);
  }
  await page.evaluate(() => document.getElementById('__tab_start')?.remove());
  const missed = want.filter((c) => !seen.includes(c));
  check(missed.length === 0, `${where}: every control is reachable with Tab`, { missed, seen });
  log(`${where}: Tab reaches all ${want.length} controls, each with a visible focus ring`);
}

/** The login card is horizontally centred and narrower than the page on desktop. */
async function loginCardCentred(page, where) {
  for (const size of [DESKTOP, MOBILE]) {
    await page.setViewportSize(size);
    const box = await page.locator('.card').first().boundingBox();
    const width = await page.evaluate(() => document.documentElement.clientWidth);
    check(box !== null, `${where}: login card is visible`);
    const left = box.x;
    const right = width - (box.x + box.width);
    check(
      Math.abs(left - right) <= 2,
      `${where}: login card is centred at ${size.width}px (left ${left.toFixed(1)}, right ${right.toFixed(1)})`,
      box,
    );
    if (size === DESKTOP) {
      check(box.width <= 560, `${where}: login card is a compact column on desktop`, box);
    } else {
      check(left >= 8 && right >= 8, `${where}: login card keeps a margin on mobile`, box);
    }
  }
  await page.setViewportSize(DESKTOP);
  log(`${where}: card centred at 1280px and 375px`);
}

async function expectLoginPage(page, where) {
  await page.waitForSelector('#username', { timeout: 10_000 });
  check(pathOf(page).startsWith('/.gatehouse/login'), `${where}: on the login page`, pathOf(page));
  for (const sel of ['#username', '#password', 'input[type=hidden][name=csrf]', 'input[type=hidden][name=rd]']) {
    check((await page.locator(sel).count()) === 1, `${where}: login form has ${sel}`);
  }
}

/** Runs `submit` (which posts the login form) and checks that `user` landed on the portal. */
async function expectSignedIn(page, user, submit) {
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/.gatehouse/login'),
    submit(),
  ]);
  await page.waitForLoadState('load');
  if (posted.status() !== 303) {
    const alert = await page.locator('.alert').first().textContent({ timeout: 2_000 }).catch(() => null);
    check(false, `${user} signs in (the login POST answered ${posted.status()}; is the password right?)`, alert?.trim());
  }
  await page.waitForURL((u) => u.pathname === '/');
}

async function signInByForm(page, user, password) {
  await expectLoginPage(page, `sign in as ${user}`);
  await page.fill('#username', user);
  await page.fill('#password', password);
  await expectSignedIn(page, user, () => page.click('form button[type=submit]'));
}

/** The viewer's portal after opening whoami: the recent strip, the tag filter (script and
 * ?tag= fallback), favourites toggled with the keyboard and without script, thumbnails. */
async function portalFeatures(page) {
  step = 'portal: recently opened';
  check((await open(page, '/')) === 200, 'portal answers 200');
  const recent = await page.$$eval('#recent .recent-list a', (as) => as.map((a) => a.getAttribute('href')));
  check(fmt(recent) === fmt(['/apps/whoami/']), 'after opening whoami the portal shows it under "Recently opened"', recent);
  // The thumbnail is `loading="lazy"`: the page's load event does not wait for it.
  await page
    .waitForFunction(() => document.querySelector('#app-public img.app-thumb')?.complete, null, { timeout: 10_000 })
    .catch(() => {});
  const thumb = await page.$eval('#app-public img.app-thumb', (img) => ({ w: img.naturalWidth, done: img.complete }));
  check(thumb.done && thumb.w > 0, "the public app's thumbnail (served by the app through the gateway) loads under the CSP", thumb);
  const facts = (await page.locator('#app-whoami .app-facts').innerText()).replace(/\s+/g, ' ');
  check(/Owner: Platform team · Updated \d{1,2} [A-Z][a-z]{2} \d{4}/.test(facts), 'cards name the owner and the last update', facts);
  log('recently opened, owner, updated date and thumbnail shown');

  step = 'portal: tag filter';
  await page.click('.tag-filter a.chip[data-tag="tools"]');
  let apps = await visibleApps(page);
  check(fmt(apps) === fmt(['/apps/whoami/']), 'the "tools" tag leaves only whoami', apps);
  check(new URL(page.url()).search === '?tag=tools', 'the address says ?tag=tools (no reload)', page.url());
  check(await page.locator('#recent').isHidden(), 'the recent strip hides while filtering');
  check((await page.getAttribute('.tag-filter a.chip[data-tag="tools"]', 'aria-current')) === 'true', 'the chosen tag is marked current');
  await page.click('#app-whoami a.tag:has-text("demo")');
  apps = await visibleApps(page);
  check(fmt(apps) === fmt(['/apps/whoami/', '/apps/public/']), "a card's tag filters by it", apps);
  await page.click('.tag-filter a.chip[data-tag=""]');
  check((await visibleApps(page)).length === 2 && new URL(page.url()).search === '', '"All" shows every app again');
  log('tag chips and card tags filter without a reload');

  step = 'portal: favourite with the keyboard';
  const star = page.locator('#app-public button.fav-button');
  await star.focus();
  const ring = await focusRing(page);
  check(ring.visible, 'the favourite button shows a focus ring', ring);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#favourites #app-public') !== null, null, { timeout: 5_000 });
  check((await star.getAttribute('aria-pressed')) === 'true', 'the button says it is pressed');
  check((await page.evaluate(() => document.activeElement?.closest('li')?.id)) === 'app-public', 'focus stays on the moved card');
  check(fmt(await visibleApps(page, '#favourites .app')) === fmt(['/apps/public/']), 'public moved to Favourites in place');
  check((await open(page, '/')) === 200, 'portal reloads');
  apps = await visibleApps(page);
  check(fmt(apps) === fmt(['/apps/public/', '/apps/whoami/']), 'after a reload the favourite comes first (stored)', apps);
  await shoot(page, 'portal-favourites', { desktop: true, mobile: true });
  await keyboardPath(page, 'portal with favourites');
  log('favourite toggled with Enter, moved in place, kept after a reload');

  step = 'portal without script';
  await page.route('**/.gatehouse/assets/portal.js', (r) =>
    r.fulfill({ status: 200, contentType: 'text/javascript', body: '' }),
  );
  check((await open(page, '/?tag=tools')) === 200, '/?tag=tools answers 200');
  apps = await visibleApps(page);
  check(fmt(apps) === fmt(['/apps/whoami/']), 'without script ?tag=tools is filtered by the server', apps);
  await page.fill('#app-search', 'public');
  await Promise.all([page.waitForURL((u) => u.search.includes('q=public')), page.press('#app-search', 'Enter')]);
  apps = await visibleApps(page);
  check(apps.length === 0 && (await page.locator('#no-match').isVisible()), 'without script the search form filters on the server (public has no "tools" tag)', apps);
  check((await open(page, '/')) === 200, 'portal answers 200');
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/' && u.hash === '#app-public'),
    page.locator('#app-public button.fav-button').click(),
  ]);
  apps = await visibleApps(page, '#favourites .app');
  check(apps.length === 0, 'without script the favourite form unmarks public and comes back to the portal', apps);
  await page.unroute('**/.gatehouse/assets/portal.js');
  log('without script: ?tag=, the search form and the favourite form work');
}

async function main() {
  mkdirSync(shots, { recursive: true });
  rmSync(join(shots, 'failure.png'), { force: true });
  const profile = mkdtempSync(join(tmpdir(), 'gatehouse-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
      viewport: DESKTOP,
      timeout: 30_000,
    });
    context.setDefaultTimeout(10_000);
    const page = context.pages()[0] ?? (await context.newPage());
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    // 4xx answers for the page itself are what some steps expect; a failing subresource
    // (stylesheet, favicon, script) is a problem.
    page.on('response', (r) => {
      if (r.status() >= 400 && r.request().resourceType() !== 'document') {
        problems.push(`${r.status()} for ${r.request().resourceType()} ${r.url()} on ${pathOf(page)}`);
      }
    });
    page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) {
        problems.push(`console error on ${pathOf(page)}: ${m.text()}`);
      }
    });
    try {
      await run(page);
      step = 'no script errors on any page';
      check(problems.length === 0, 'no JavaScript errors or console errors', problems);
    } catch (e) {
      try {
        await page.screenshot({ path: join(shots, 'failure.png'), fullPage: true });
        console.error(`  (screenshot of the failing page: ${join(shots, 'failure.png')}, at ${page.url()})`);
      } catch {
        // the page may be gone
      }
      throw e;
    }
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

async function run(page) {
  // 1. Anonymous portal: only the public app.
  step = 'anonymous portal';
  check((await open(page, '/')) === 200, 'anonymous portal answers 200');
  let apps = await visibleApps(page);
  check(fmt(apps) === fmt(['/apps/public/']), 'anonymous portal lists only the public app', apps);
  await shoot(page, 'portal-anonymous');
  log('anonymous portal lists only /apps/public/');

  // 2. Sign in link → login page.
  step = 'sign-in link';
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.gatehouse/login'),
    page.getByRole('link', { name: 'Sign in', exact: true }).first().click(),
  ]);
  await expectLoginPage(page, 'after clicking Sign in');
  check(
    (await page.locator('button[type=submit]', { hasText: 'Sign in' }).count()) === 1,
    'login page has a "Sign in" submit button',
  );
  await loginCardCentred(page, 'login');
  await shoot(page, 'login', { desktop: true, mobile: true });
  log('Sign in opens the login form');

  // 3. Wrong password: the error shows and the user name stays.
  step = 'wrong password';
  await page.fill('#username', 'viewer');
  await page.fill('#password', 'definitely-not-the-password');
  const [posted] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/.gatehouse/login'),
    page.click('form button[type=submit]'),
  ]);
  check(posted.status() === 401, 'a wrong password answers 401', posted.status());
  await page.waitForLoadState('load');
  await expectLoginPage(page, 'after a wrong password');
  const alert = (await page.locator('.alert').first().textContent())?.trim();
  check(alert === 'Wrong user name or password.', 'a wrong password shows "Wrong user name or password."', alert);
  check((await page.inputValue('#username')) === 'viewer', 'the user name is kept after a wrong password', await page.inputValue('#username'));
  check((await page.inputValue('#password')) === '', 'the password field is emptied after a wrong password');
  const focusedAfterError = await page.evaluate(() => document.activeElement?.id);
  check(focusedAfterError === 'password', 'focus is on the password after a wrong password', focusedAfterError);
  await loginCardCentred(page, 'login error');
  await shoot(page, 'login-error');
  log('wrong password: error shown, user name kept, focus on the password');

  // 4. Sign in as viewer with the keyboard only.
  step = 'keyboard sign-in';
  check((await open(page, '/.gatehouse/login')) === 200, 'login page answers 200');
  await expectLoginPage(page, 'fresh login page');
  let focused = await page.evaluate(() => document.activeElement?.id);
  check(focused === 'username', 'focus is on the user name when the login page loads', focused);
  await page.keyboard.type('viewer');
  await page.keyboard.press('Tab');
  const pwRing = await focusRing(page);
  check(pwRing.el === '#password', 'Tab moves from the user name to the password', pwRing);
  check(pwRing.visible && pwRing.focusVisible, 'the password field shows a focus ring after Tab', pwRing);
  await page.keyboard.type(viewerPassword);
  await expectSignedIn(page, 'viewer', () => page.keyboard.press('Enter'));
  log('viewer signed in with the keyboard only (autofocus, Tab, Enter)');

  // 5. The viewer's portal.
  step = 'viewer portal';
  apps = await visibleApps(page);
  check(
    apps.includes('/apps/whoami/') && apps.includes('/apps/public/') && !apps.includes('/apps/admins-only/'),
    "viewer's portal lists whoami and public but not admins-only",
    apps,
  );
  check((await page.locator('h1', { hasText: 'Your apps' }).count()) === 1, 'viewer portal is headed "Your apps"');
  check((await page.getByRole('button', { name: 'Sign out', exact: true }).count()) === 1, 'viewer portal has a "Sign out" button');
  await shoot(page, 'portal-viewer', { desktop: true, mobile: true });
  await keyboardPath(page, 'viewer portal');
  log('viewer portal lists whoami and public, not admins-only');

  // 6. Search filters the cards; nonsense shows the no-match message.
  step = 'portal search';
  await page.click('#app-search');
  await page.keyboard.type('who');
  apps = await visibleApps(page);
  check(fmt(apps) === fmt(['/apps/whoami/']), 'searching "who" leaves only the whoami card', apps);
  check(await page.locator('#no-match').isHidden(), 'no no-match message while something matches');
  await page.fill('#app-search', 'zzqx-nothing-like-this');
  apps = await visibleApps(page);
  check(apps.length === 0, 'searching nonsense hides every card', apps);
  check(await page.locator('#no-match').isVisible(), 'searching nonsense shows the no-match message');
  await shoot(page, 'portal-no-match');
  await page.fill('#app-search', '');
  apps = await visibleApps(page);
  check(apps.length === 2, 'clearing the search shows every card again', apps);
  await page.focus('#app-search');
  await page.keyboard.press('Tab');
  const cardRing = await focusRing(page);
  check(cardRing.el === 'a.chip' && cardRing.text === 'All' && cardRing.visible, 'Tab from the search box focuses the tag filter with a ring', cardRing);
  await page.screenshot({ path: join(shots, 'portal-keyboard-focus.png'), fullPage: true });
  log('search filters the cards and says when nothing matches');

  // 7. whoami sees the viewer.
  step = 'whoami';
  await Promise.all([page.waitForURL((u) => u.pathname === '/apps/whoami/'), page.click('a[href="/apps/whoami/"]')]);
  const forwardedUser = await page
    .locator('table tr', { has: page.locator('th', { hasText: /^x-forwarded-user$/ }) })
    .locator('td')
    .first()
    .textContent({ timeout: 5_000 })
    .catch(() => null);
  check(forwardedUser?.trim() === 'viewer', 'whoami shows x-forwarded-user = viewer', forwardedUser);
  await shoot(page, 'whoami');
  log('whoami received x-forwarded-user: viewer');

  // 7b. The portal remembers: recently opened, favourites (with and without script), tags.
  await portalFeatures(page);

  // 8. 403 for the viewer on the admins' app.
  step = '403 page';
  let status = await open(page, '/apps/admins-only/');
  check(status === 403, '/apps/admins-only/ answers 403 to the viewer', status);
  const h403 = (await page.locator('h1').first().textContent())?.trim();
  check(h403?.startsWith('You cannot open') && h403.includes('Admins only'), 'the 403 page names the app', h403);
  await loginCardCentred(page, '403 page');
  await shoot(page, '403', { desktop: true, mobile: true });
  await keyboardPath(page, '403 page');
  log('403 page: "' + h403 + '"');

  // 9. 404 for an unknown app.
  step = '404 page';
  status = await open(page, '/apps/nope/');
  check(status === 404, '/apps/nope/ answers 404', status);
  const body404 = await page.locator('main').innerText();
  check(body404.includes('There is no app here'), 'the 404 page says "There is no app here"', body404);
  await shoot(page, '404', { desktop: true, mobile: true });
  log('404 page for /apps/nope/');

  // 10. The sign-out confirmation page, then sign out with the portal's button.
  step = 'logout page';
  check((await open(page, '/.gatehouse/logout')) === 200, '/.gatehouse/logout answers 200');
  check((await page.getByRole('button', { name: 'Sign out', exact: true }).count()) >= 1, 'the logout page offers "Sign out"');
  await shoot(page, 'logout', { desktop: true, mobile: true });
  await keyboardPath(page, 'logout page');

  step = 'sign out';
  await open(page, '/');
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.gatehouse/login'),
    page.getByRole('button', { name: 'Sign out', exact: true }).click(),
  ]);
  await expectLoginPage(page, 'after signing out');
  const notice = (await page.locator('.alert').first().textContent())?.trim();
  check(/signed out/i.test(notice ?? ''), 'the login page says you are signed out', notice);
  await shoot(page, 'signed-out');
  await keyboardPath(page, 'login page');
  check((await open(page, '/apps/whoami/')) === 200 && pathOf(page).startsWith('/.gatehouse/login'), 'after sign-out whoami asks to sign in again', pathOf(page));
  log('signed out through the portal button; back on the login page with the notice');

  // 11. The admin sees the admins' app.
  step = 'admin portal';
  await open(page, '/.gatehouse/login');
  await signInByForm(page, 'admin', adminPassword);
  apps = await visibleApps(page);
  check(
    ['/apps/whoami/', '/apps/public/', '/apps/admins-only/'].every((a) => apps.includes(a)),
    "admin's portal lists admins-only too",
    apps,
  );
  await shoot(page, 'portal-admin', { desktop: true, mobile: true });
  status = await open(page, '/apps/admins-only/');
  check(status === 200, 'admin opens /apps/admins-only/', status);
  log('admin portal lists admins-only and the admin may open it');

  // 12. The same pages in a dark colour scheme (prefers-color-scheme: dark).
  step = 'dark scheme';
  await page.emulateMedia({ colorScheme: 'dark' });
  await open(page, '/');
  await shoot(page, 'portal-admin-dark');
  await open(page, '/.gatehouse/logout');
  await shoot(page, 'logout-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  await adminUi(page);
  await apiTokens(page);
}

/** The text of the first `.alert`, trimmed ('' when there is none). */
async function alertText(page) {
  const n = await page.locator('.alert').count();
  return n ? ((await page.locator('.alert').first().textContent()) ?? '').trim() : '';
}

/** 13. The admin UI: the admin creates a restricted app for group staff (keyboard only),
 *  checks a person, sees validation next to the field, the sessions and the audit log; the
 *  viewer (staff) opens the new app and is refused the admin pages. */
async function adminUi(page) {
  step = 'admin apps list';
  let status = await open(page, '/.gatehouse/admin/');
  check(status === 200 && pathOf(page) === '/.gatehouse/admin/apps', 'the admin lands on the Apps page', pathOf(page));
  const rows = await page.locator('table tbody tr').count();
  check(rows >= 3, 'the Apps page lists the demo apps', rows);
  const upstream = ((await page.locator('.health').first().textContent()) ?? '').trim();
  check(/^127\.0\.0\.1:\d+$/.test(upstream), 'upstreams are shown with their health', upstream);
  await shoot(page, 'admin-apps', { desktop: true, mobile: true });
  await keyboardPath(page, 'admin apps');

  step = 'admin creates an app with the keyboard';
  await page.locator('a.button', { hasText: 'New app' }).focus();
  await Promise.all([page.waitForURL((u) => u.pathname === '/.gatehouse/admin/apps/new'), page.keyboard.press('Enter')]);
  await keyboardPath(page, 'new app form');
  await page.focus('#slug');
  await page.keyboard.type('reports');
  await page.keyboard.press('Tab');
  await page.keyboard.type('Staff reports');
  await page.keyboard.press('Tab');
  await page.keyboard.type('Built in the admin UI');
  await page.keyboard.press('Tab');
  await page.keyboard.type(upstream);
  await shoot(page, 'admin-new-app', { desktop: true, mobile: true });
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.gatehouse/admin/apps/reports'),
    page.locator('button[type=submit]', { hasText: 'Create app' }).press('Enter'),
  ]);
  check(/Saved/.test(await alertText(page)), 'the app page confirms the save', await alertText(page));

  step = 'admin grants group staff with the keyboard only';
  await page.focus('#grant-kind');
  await page.keyboard.press('Tab');
  check((await page.evaluate(() => document.activeElement?.id)) === 'grant-name', 'Tab goes from the grant kind to the name');
  await page.keyboard.type('staff');
  await page.keyboard.press('Tab');
  check((await page.evaluate(() => document.activeElement?.id)) === 'grant-duration', 'then to the duration');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  const grantButton = await page.evaluate(() => document.activeElement?.textContent?.trim());
  check(/Grant/.test(grantButton ?? ''), 'then to the Grant button', grantButton);
  await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.keyboard.press('Enter')]);
  await page.waitForLoadState('load');
  const grants = (await page.locator('section.card', { hasText: 'Besides the allow-lists' }).locator('table').textContent()) ?? '';
  check(/staff/.test(grants) && /until removed/.test(grants), 'the grant to staff is listed, until removed', grants.slice(0, 200));
  await shoot(page, 'admin-app', { desktop: true, mobile: true });

  step = 'check a person';
  await page.fill('#check', 'viewer');
  await Promise.all([page.waitForURL((u) => u.searchParams.get('check') === 'viewer'), page.press('#check', 'Enter')]);
  const verdict = await page.locator('.alert[role=status]').last().textContent();
  check(/viewer can open this app/.test(verdict ?? ''), 'checking viewer says allowed, with the reason', verdict);
  log('admin created /apps/reports/ and granted group staff with the keyboard; "check a person" agrees');

  step = 'validation next to the field';
  await open(page, '/.gatehouse/admin/apps/new');
  await page.fill('#slug', 'Bad Slug');
  await page.fill('#upstreams', 'nowhere:80a');
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.click('button[type=submit]'),
  ]);
  await page.waitForLoadState('load');
  check(answer.status() === 400, 'an invalid app is refused with 400', answer.status());
  check((await page.locator('#slug-error').count()) === 1 && (await page.locator('#upstreams-error').count()) === 1, 'errors are shown next to slug and upstreams');
  check((await page.getAttribute('#slug', 'aria-invalid')) === 'true', 'the invalid field is marked for assistive technology');
  await shoot(page, 'admin-app-invalid', { desktop: true, mobile: true });

  step = 'people: a local account for the owner';
  status = await open(page, '/.gatehouse/admin/users');
  const people = (await page.locator('table').textContent()) ?? '';
  check(status === 200 && people.includes('admin') && people.includes('viewer'), 'the People page lists the local accounts', people.slice(0, 200));
  await shoot(page, 'admin-people', { desktop: true, mobile: true });
  await open(page, '/.gatehouse/admin/users/new');
  await keyboardPath(page, 'new local account form');
  await shoot(page, 'admin-new-user', { desktop: true, mobile: true });
  await page.fill('#username', 'olga');
  await page.fill('#display_name', 'Olga Owner');
  await page.fill('#groups', 'ops');
  await page.fill('#password', ownerPassword);
  await Promise.all([page.waitForURL((u) => u.pathname === '/.gatehouse/admin/users/olga'), page.click('button[type=submit]')]);
  await shoot(page, 'admin-user', { desktop: true, mobile: true });

  step = 'an app owned by olga';
  await open(page, '/.gatehouse/admin/apps/new');
  await page.fill('#slug', 'vault');
  await page.fill('#name', 'Vault');
  await page.fill('#upstreams', upstream);
  await page.fill('#owner_users', 'olga');
  await Promise.all([page.waitForURL((u) => u.pathname === '/.gatehouse/admin/apps/vault'), page.click('button[type=submit]')]);

  step = 'branding';
  status = await open(page, '/.gatehouse/admin/branding');
  check(status === 200 && (await page.locator('#accent').count()) === 1, 'the Branding page has the accent field', status);
  await keyboardPath(page, 'branding form');
  await page.fill('#accent', '#ffff00');
  const [refused] = await Promise.all([page.waitForResponse((r) => r.request().method() === 'POST'), page.click('button[type=submit]')]);
  await page.waitForLoadState('load');
  check(refused.status() === 400 && /contrast/.test((await page.locator('#accent-error').textContent()) ?? ''), 'a low-contrast accent is refused next to the field, with the ratio', refused.status());
  await shoot(page, 'admin-branding', { desktop: true, mobile: true });

  step = 'providers page';
  status = await open(page, '/.gatehouse/admin/providers');
  const local = page.locator('[data-provider=local]');
  check(status === 200 && (await local.locator('[data-status=reachable]').count()) === 1, 'the Providers page shows the local provider reachable', status);
  check((await page.locator('.admin-nav a[aria-current=page]').textContent()) === 'Providers', 'Providers is the current nav item');
  await shoot(page, 'admin-providers', { desktop: true, mobile: true });
  log('the Providers page lists the local provider as reachable');

  step = 'grant field suggests names, picked with the keyboard';
  await open(page, '/.gatehouse/admin/apps/reports');
  await page.focus('#grant-kind');
  await page.selectOption('#grant-kind', 'user');
  await page.focus('#grant-name');
  check((await page.getAttribute('#grant-name', 'role')) === 'combobox', 'the script made the grant field a combobox');
  await page.keyboard.type('vie');
  const option = page.locator('#grant-name-suggestions [role=option]', { hasText: 'viewer' });
  await option.waitFor({ state: 'visible', timeout: 5000 });
  check((await page.getAttribute('#grant-name', 'aria-expanded')) === 'true', 'the listbox is announced as open');
  await shoot(page, 'admin-grant-suggestions', { desktop: true, mobile: true });
  await page.keyboard.press('ArrowDown');
  check((await option.getAttribute('aria-selected')) === 'true', 'ArrowDown selects the first suggestion');
  await page.keyboard.press('Enter');
  check((await page.inputValue('#grant-name')) === 'viewer', 'Enter picks the suggestion', await page.inputValue('#grant-name'));
  check((await page.getAttribute('#grant-name', 'aria-expanded')) === 'false', 'the listbox closes after picking');
  await Promise.all([page.waitForURL((u) => u.searchParams.get('saved') === '1'), page.keyboard.press('Enter')]);
  const grantRows = (await page.locator('section.card', { hasText: 'Grants' }).locator('table').textContent()) ?? '';
  check(grantRows.includes('viewer'), 'the picked name is granted', grantRows.slice(0, 200));
  log('typing "vie" in the grant field suggests viewer; ArrowDown + Enter picks it; Enter grants it');

  step = 'sessions and audit pages';
  status = await open(page, '/.gatehouse/admin/sessions');
  check(status === 200 && (await page.locator('table tbody tr').count()) >= 1, 'the Sessions page lists live sessions', status);
  await shoot(page, 'admin-sessions', { desktop: true, mobile: true });
  status = await open(page, '/.gatehouse/admin/audit');
  check(status === 200, 'the audit log opens', status);
  await shoot(page, 'admin-audit', { desktop: true, mobile: true });

  step = 'usage';
  status = await open(page, '/.gatehouse/admin/usage');
  check(status === 200 && (await page.locator('#top-visits').count()) === 1 && (await page.locator('#top-people').count()) === 1, 'the Usage overview ranks apps by visits and by people', status);
  await shoot(page, 'admin-usage', { desktop: true, mobile: true });
  await open(page, '/.gatehouse/admin/apps/reports');
  const charts = page.locator('#usage svg[role=img]');
  check((await charts.count()) === 2 && (await page.locator('#usage svg title').first().textContent())?.includes('per day'), "the app page's Usage section has two titled charts", await charts.count());
  await page.locator('#usage').scrollIntoViewIfNeeded();
  await shoot(page, 'admin-app-usage', { desktop: true, mobile: true });
  log('usage overview and the app page usage section render at both widths');

  step = 'a member opens the app, a non-member is refused and asks';
  await signOut(page);
  await signInByForm(page, 'viewer', viewerPassword);
  const apps = await visibleApps(page);
  check(apps.includes('/apps/reports/'), "the viewer's portal lists the new app", apps);
  status = await open(page, '/apps/reports/');
  check(status === 200, 'the viewer (member of staff) opens the new app', status);
  status = await open(page, '/apps/vault/');
  check(status === 403, 'the viewer (not a member) is refused the vault', status);
  await shoot(page, 'request-access', { desktop: true, mobile: true });
  await page.fill('#reason', 'Month-end close');
  await Promise.all([page.waitForURL((u) => u.pathname === '/apps/vault/'), page.click('form.request-access button[type=submit]')]);
  check(/waiting for/.test(await alertText(page)), 'the 403 page says the request is pending', await alertText(page));
  await shoot(page, 'request-pending');
  status = await open(page, '/.gatehouse/admin/apps');
  check(status === 403, 'the viewer gets 403 on the admin pages', status);
  check(/Administrators only/.test((await page.locator('h1').textContent()) ?? ''), 'the 403 page says why');
  await shoot(page, 'admin-forbidden', { desktop: true, mobile: true });
  log('viewer opens /apps/reports/, is refused /apps/vault/ and asks for it');

  step = 'the owner (not an administrator) approves for a short while';
  await signOut(page);
  await signInByForm(page, 'olga', ownerPassword);
  status = await open(page, '/.gatehouse/admin/');
  check(status === 200 && /My apps/.test((await page.locator('nav.admin-nav').textContent()) ?? ''), 'the owner sees My apps', status);
  const mine = (await page.locator('table').textContent()) ?? '';
  check(mine.includes('Vault') && !mine.includes('Staff reports'), "the owner's list holds her app only", mine.slice(0, 200));
  status = await open(page, '/.gatehouse/admin/users');
  check(status === 403, 'the owner cannot open People', status);
  status = await open(page, '/.gatehouse/admin/requests');
  const pendingText = (await page.locator('.requests').textContent()) ?? '';
  check(status === 200 && pendingText.includes('viewer') && pendingText.includes('Month-end close'), 'the owner sees the pending request with its reason', pendingText.slice(0, 200));
  await shoot(page, 'admin-requests', { desktop: true, mobile: true });
  // Until a moment 20 s from now (UTC): long enough to open the app, short enough to watch
  // it end.
  const ends = Math.floor(Date.now() / 1000) + 20;
  const until = new Date(ends * 1000).toISOString().slice(0, 19).replace('T', ' ');
  await page.fill('.requests input[name=until]', until);
  await Promise.all([page.waitForURL((u) => u.pathname === '/.gatehouse/admin/requests'), page.click('button[value=approve]')]);
  check((await page.locator('.requests').count()) === 0, 'no request is pending any more');
  log(`owner olga approved the request until ${until} UTC`);

  step = 'the requester opens the app until the grant ends';
  await signOut(page);
  await signInByForm(page, 'viewer', viewerPassword);
  status = await open(page, '/apps/vault/');
  check(status === 200, 'after approval the viewer opens the vault', status);
  const viewerCookies = await page.context().cookies();
  // Wait for the end with a deadline, asking the gateway: refused from the end's second on.
  let after = -1;
  while (Date.now() < (ends + 5) * 1000) {
    status = await open(page, '/apps/vault/');
    if (status === 403) {
      after = Date.now() / 1000 - ends;
      break;
    }
    check(status === 200 && Date.now() / 1000 < ends + 0.5, 'the vault stays open until the end, not after', { status, late: Date.now() / 1000 - ends });
    await page.waitForTimeout(250);
  }
  check(after >= 0 && after < 2, 'access ends when the grant does', after);
  log(`the grant ended; the vault answered 403 ${after.toFixed(1)} s after its end`);

  step = 'the admin ends the viewer\'s sessions';
  await page.context().clearCookies();
  await open(page, '/.gatehouse/login');
  await signInByForm(page, 'admin', adminPassword);
  status = await open(page, '/.gatehouse/admin/sessions');
  await Promise.all([
    page.waitForURL((u) => u.pathname === '/.gatehouse/admin/sessions' && u.searchParams.has('revoked')),
    page.locator('form', { has: page.locator('input[name=user][value=viewer]') }).locator('button').click(),
  ]);
  check(/Ended \d+ session/.test(await alertText(page)), 'the Sessions page confirms', await alertText(page));
  const adminCookies = await page.context().cookies();
  await page.context().clearCookies();
  await page.context().addCookies(viewerCookies);
  await open(page, '/apps/reports/');
  check(pathOf(page).startsWith('/.gatehouse/login'), "the viewer's revoked session is sent to sign in", pathOf(page));
  await page.context().clearCookies();
  await page.context().addCookies(adminCookies);

  step = 'the audit log shows each step';
  status = await open(page, '/.gatehouse/admin/audit');
  const auditText = (await page.locator('table').textContent()) ?? '';
  for (const action of ['app.create', 'grant.add', 'user.create', 'access.request', 'access.approve', 'grant.expire', 'session.delete', 'signin.success']) {
    check(auditText.includes(action), `the audit log shows ${action}`, auditText.slice(0, 300));
  }
  await shoot(page, 'admin-audit-after', { desktop: true, mobile: true });
  log('the audit log shows creation, grant, request, approval, expiry and revocation');
}

async function signOut(page) {
  await open(page, '/.gatehouse/logout');
  await Promise.all([page.waitForURL((u) => u.pathname.startsWith('/.gatehouse/login')), page.click('form button[type=submit]')]);
}

/** 14. API tokens: the admin creates one with the keyboard, sees the secret once, uses it
 *  on the JSON API, revokes it, and the API refuses it at once. */
async function apiTokens(page) {
  step = 'API tokens page';
  await open(page, '/.gatehouse/logout');
  await Promise.all([page.waitForURL((u) => u.pathname.startsWith('/.gatehouse/login')), page.click('form button[type=submit]')]);
  await signInByForm(page, 'admin', adminPassword);
  let status = await open(page, '/.gatehouse/admin/tokens');
  check(status === 200, 'the API tokens page opens', status);
  await shoot(page, 'admin-tokens', { desktop: true, mobile: true });
  await keyboardPath(page, 'API tokens');

  step = 'admin creates a token with the keyboard';
  await page.focus('#token-name');
  await page.keyboard.type('ci-browser');
  const [answer] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.locator('button[type=submit]', { hasText: 'Create token' }).press('Enter'),
  ]);
  await page.waitForLoadState('load');
  check(answer.status() === 201, 'the token is created', answer.status());
  const secret = await page.inputValue('#new-token');
  check(/^ghk_[A-Za-z0-9_-]{43}$/.test(secret), 'the new token is shown once', secret.slice(0, 6));
  await shoot(page, 'admin-token-created', { desktop: true, mobile: true });
  // As a script would call it (Playwright's request client: not a page subresource).
  const api = async (t) =>
    (await page.request.get(url('/.gatehouse/admin/api/apps'), { headers: { Authorization: `Bearer ${t}` } })).status();
  check((await api(secret)) === 200, 'the JSON API accepts the token', await api(secret));
  await open(page, '/.gatehouse/admin/tokens');
  check(!(await page.content()).includes(secret), 'the token is not shown again');

  step = 'admin revokes the token';
  await Promise.all([
    page.waitForURL((u) => u.searchParams.get('revoked') === '1'),
    page.locator('button', { hasText: 'Revoke ci-browser' }).press('Enter'),
  ]);
  check((await api(secret)) === 401, 'the revoked token is refused at once', await api(secret));
  await shoot(page, 'admin-token-revoked');
  log('admin created an API token with the keyboard, used it, revoked it; the API refused it at once');
}

main().then(
  () => {
    console.log(`PASS: ${checks} checks; screenshots in ${shots}`);
  },
  (e) => {
    if (e instanceof CheckFailed) {
      console.error(`FAIL: [${step}] ${e.message}`);
    } else {
      console.error(`FAIL: [${step}] ${e && e.stack ? e.stack : e}`);
    }
    process.exit(1);
  },
);
