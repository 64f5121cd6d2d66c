// tests/console/drive.js BASE USER PASSWORD [SHOTS_DIR] -- acts in the
// console as an operator would, in headless chromium driven over the
// DevTools protocol on a pipe (--remote-debugging-pipe: no websocket, no
// npm, only node and chromium). The page's own script does the work:
// this only clicks, types and reads the DOM.
//
// On a world with stuck sagas (stk-1, stk-2): opens stk-1 from the list,
// checks its path is marked, previews resume (the refund re-sent with its
// id, the undos in order), is refused without login, logs in (a wrong
// password first), resumes it with a reason and sees the saga finish its
// compensation with the actor in its timeline; then the bulk form over
// the stuck filter. With SHOTS_DIR, screenshots console-action.png (the
// preview) and console-bulk.png there. Exit 0 when every check passed.
'use strict';
const {spawn} = require('child_process');
const fs = require('fs'), os = require('os'), path = require('path');

const [base, user, password, shots] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'saga-drive-'));
const chrome = spawn('chromium', [
  '--headless', '--disable-gpu', '--no-sandbox', '--no-first-run',
  '--user-data-dir=' + profile, '--remote-debugging-pipe',
  '--window-size=1280,900', 'about:blank',
], {stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe']});
const toChrome = chrome.stdio[3], fromChrome = chrome.stdio[4];
const pending = new Map();
let nextId = 0, buf = '';

fromChrome.on('data', (chunk) => {
  buf += chunk.toString('utf8');
  for (let i; (i = buf.indexOf('\0')) >= 0;) {
    const msg = JSON.parse(buf.slice(0, i));
    buf = buf.slice(i + 1);
    const p = msg.id !== undefined && pending.get(msg.id);
    if (!p) continue;
    pending.delete(msg.id);
    if (msg.error) p.reject(new Error(JSON.stringify(msg.error)));
    else p.resolve(msg.result);
  }
});

function send(method, params, sessionId) {
  return new Promise((resolve, reject) => {
    const m = {id: ++nextId, method, params: params || {}};
    if (sessionId) m.sessionId = sessionId;
    pending.set(m.id, {resolve, reject});
    toChrome.write(JSON.stringify(m) + '\0');
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let session, fails = 0;
const S = (method, params) => send(method, params, session);

function check(ok, what) {
  console.log((ok ? 'ok   ' : 'FAIL ') + what);
  if (!ok) fails++;
}

async function js(expr) {
  const r = await S('Runtime.evaluate',
                    {expression: expr, awaitPromise: true, returnByValue: true});
  if (r.exceptionDetails) throw new Error(expr + ': ' + r.exceptionDetails.text);
  return r.result.value;
}

// Waits until expr is truthy (its value), or null after ms.
async function until(expr, ms) {
  const t0 = Date.now();
  for (;;) {
    try {
      const v = await js(expr);
      if (v) return v;
    } catch (e) { /* the page is changing */ }
    if (Date.now() - t0 > (ms || 10000)) return null;
    await sleep(100);
  }
}

async function go(url) {
  await S('Page.navigate', {url: base + url});
  await until('document.readyState === "complete"');
}

async function shot(name) {
  if (!shots) return;
  const r = await S('Page.captureScreenshot', {format: 'png'});
  fs.writeFileSync(path.join(shots, 'console-' + name + '.png'),
                   Buffer.from(r.data, 'base64'));
}

const q = (sel) => `document.querySelector(${JSON.stringify(sel)})`;
const text = (sel) => `(${q(sel)} || {}).textContent || ''`;
const type = (sel, v) => `(${q(sel)}.value = ${JSON.stringify(v)}, true)`;
const click = (sel) => `(${q(sel)}.click(), true)`;

// Previews action on the saga page open; the preview's text.
async function preview(action) {
  await js(click(`#actions button[data-action="${action}"]`));
  return until(`${q('#act-confirm')} && !${q('#act-confirm')}.disabled && ` +
               `${text('#act-preview')}`);
}

async function sagaPage() {
  await go('/sagas?status=stuck');
  check(await js(`!!${q('a[href="/sagas/stk-1"]')}`), 'stk-1 is listed as stuck');
  await js(click('a[href="/sagas/stk-1"]'));
  check(!!await until(`location.pathname === "/sagas/stk-1" && ` +
                      `${text('h1')} === "Saga stk-1"`), 'it opens from the list');
  check(await js(`!!${q('g.state.current[data-state="payment"]')} && ` +
                 `!!${q('g.state.visited[data-state="reserve_stock"]')}`),
        'its path and current state are marked');
  check(await js(`!!${q('button[data-action="resume"]')} && ` +
                 `!${q('button[data-action="retry"]')}`),
        'a stuck saga offers resume, not retry');
}

async function refusedWithoutLogin() {
  const p = await preview('resume');
  check(!!p && p.includes('payment.refund') && p.includes('stk-1:payment:undo:4'),
        'the preview names the refund re-sent and its id');
  check(await js(`document.querySelectorAll('ol.undos li').length === 2 && ` +
                 `document.querySelectorAll('ol.undos li')[1].textContent` +
                 `.includes('inventory.release')`),
        'and the compensations in order');
  await shot('action');
  await js(type('#act-reason', 'trying without a login'));
  await js(click('#act-confirm'));
  const r = await until(text('#act-result .error'));
  check(!!r && r.includes('not logged in'), 'acting without login is refused');
}

async function logIn() {
  await js(click('#actions a[href^="/login"]'));
  await until(`location.pathname === "/login" && !!${q('#login-user')}`);
  await js(type('#login-user', user));
  await js(type('#login-password', 'not-' + password));
  await js(click('#login-submit'));
  const bad = await until(text('#login-result .error'));
  check(!!bad && bad.includes('wrong user name or password'),
        'a wrong password is refused');
  await js(type('#login-password', password));
  await js(click('#login-submit'));
  check(!!await until(`location.pathname === "/sagas/stk-1" && ` +
                      `${text('#user')} === ${JSON.stringify(user)}`),
        'logged in, back on the saga');
}

async function resume() {
  const p = await preview('resume');
  check(!!p && p.includes('stk-1:payment:undo:4'), 'the preview again');
  await js(type('#act-reason', 'refund gateway fixed'));
  await js(click('#act-confirm'));
  const r = await until(text('#act-result .applied'));
  check(!!r && r.includes('applied'), 'resumed: the orchestrator answers applied');
  check(!!await until(`!!${q('table.facts .s-failed')}`, 20000),
        'the saga finishes its compensation (failed)');
  check(await js(`${text('#timeline')}.includes(${JSON.stringify(user)}) && ` +
                 `${text('#timeline')}.includes('refund gateway fixed')`),
        'its timeline shows who and why');
}

async function bulk() {
  await go('/sagas?status=stuck');
  await js(`(${q('#bulk-action')}.value = "resume", true)`);
  await js(click('#bulk-preview'));
  const s = await until(text('#bulk-summary .summary'));
  check(!!s && s.startsWith('1 saga: ') && s.includes('payment.refund'),
        'the bulk preview summarises the set: ' + s);
  await shot('bulk');
  await js(type('#bulk-reason', 'gateway fixed for all'));
  await js(click('#bulk-confirm'));
  const r = await until(text('#bulk-result .answer'));
  check(!!r && await js(`${text('#bulk-result')}.includes('applied: 1')`),
        'bulk resume: applied to the one saga');
}

async function main() {
  const {targetId} = await send('Target.createTarget', {url: 'about:blank'});
  ({sessionId: session} = await send('Target.attachToTarget',
                                      {targetId, flatten: true}));
  await S('Page.enable');
  await S('Emulation.setDeviceMetricsOverride',
          {width: 1280, height: 900, deviceScaleFactor: 1, mobile: false});
  await sagaPage();
  await refusedWithoutLogin();
  await logIn();
  await resume();
  await bulk();
}

const watchdog = setTimeout(() => { console.log('FAIL timed out'); finish(1); }, 120000);
// Stops chromium, then (once it has let go of it) removes its profile.
function finish(rc) {
  clearTimeout(watchdog);
  const done = () => {
    try { fs.rmSync(profile, {recursive: true, force: true}); } catch (e) { /* tmp */ }
    process.exit(rc);
  };
  if (chrome.exitCode !== null) return done();
  chrome.once('exit', done);
  chrome.kill();
  setTimeout(done, 5000);
}
main().then(() => finish(fails === 0 ? 0 : 1),
            (e) => { console.log('FAIL ' + e.message); finish(1); });
