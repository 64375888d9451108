// tcpchat in the browser: one WebSocket carrying the same lines an nc user sends and
// receives. Plain script, no build step, no frameworks; everything the server says is
// inserted as text (textContent / text nodes), never as HTML.
'use strict';

// ---- Reading server lines -------------------------------------------------------------
// Pure functions, kept apart from the DOM so that they can be tried in Node.
//
// Two kinds of line come from the server. Event lines (U+0001, then one JSON object) tell
// the page its own state: its nick, its room, who is there, that it is being sent away.
// Text lines are what an nc user reads, and much of their text is chosen by other users
// (nicks, messages, /quit reasons), so the page only shows them: nothing it believes about
// itself is read from text.

const EVENT_MARK = '\u0001'; // the server strips control characters from all that users send
const NAME = '[A-Za-z0-9_-]{1,20}'; // a nick or room name
// `s`: a line may hold U+2028, which `.` does not match otherwise.
const re = (source) => new RegExp('^' + source.replace(/NAME/g, NAME) + '$', 's');
const PATTERNS = {
  time: /^(\d\d:\d\d )(.*)$/s, // `/time on` prefixes every line
  history: /^(\* history \d\d:\d\d )(.*)$/s,
  whoAnswer: /^\* in \S+ \(\d+\):/, // only to hide the answer to an automatic /who
  wall: re('\\* notice from (NAME): (.*)'),
  privateIn: re('\\[(NAME) -> you\\] (.*)'),
  privateOut: re('\\[you -> (NAME)\\] (.*)'),
  message: re('\\[(NAME)\\] (.*)'),
};

// An event line -> its object; a text line -> null. A marked line that is not a JSON
// object is still the server's, never text to show: it gives an empty event.
function parseEvent(line) {
  if (!line.startsWith(EVENT_MARK)) return null; // `/time on` never stamps event lines
  try {
    const event = JSON.parse(line.slice(EVENT_MARK.length));
    return event !== null && typeof event === 'object' && !Array.isArray(event) ? event : {};
  } catch (err) {
    return {};
  }
}

// One text line from the server -> {kind, ...fields}, for showing it; `prefix` is a
// `/time on` clock.
function parseLine(line) {
  let prefix = '';
  const timed = line.match(PATTERNS.time);
  if (timed) [, prefix, line] = timed;
  const p = parseBody(line);
  p.prefix = prefix;
  return p;
}

// Every line a user writes starts with `[nick]`, so a line starting with `* ` or `! ` is
// the server's (a kind to colour it by, nothing more).
function parseBody(body) {
  let m;
  const P = PATTERNS;
  if ((m = body.match(P.history))) return { kind: 'history', body, head: m[1], inner: parseBody(m[2]) };
  if ((m = body.match(P.wall))) return { kind: 'wall', body, nick: m[1], text: m[2] };
  if (P.whoAnswer.test(body)) return { kind: 'who', body };
  if ((m = body.match(P.privateIn))) return { kind: 'private', body, nick: m[1], text: m[2], head: '[', tail: ' -> you] ' };
  if ((m = body.match(P.privateOut))) return { kind: 'private', body, nick: m[1], text: m[2], head: '[you -> ', tail: '] ' };
  if ((m = body.match(P.message))) {
    // `/me waves` from ann reaches others as `[ann] * waves`.
    if (m[2].startsWith('* ')) return { kind: 'action', body, nick: m[1], text: m[2].slice(2) };
    return { kind: 'message', body, nick: m[1], text: m[2] };
  }
  if (body.startsWith('* ')) return { kind: 'notice', body };
  if (body.startsWith('! ')) return { kind: 'error', body };
  return { kind: 'other', body }; // e.g. message-of-the-day lines
}

// Stable hue for a nick (FNV-1a over its lower-case form: nicks are unique ignoring case).
function nickHue(nick) {
  let h = 0x811c9dc5;
  for (const ch of nick.toLowerCase()) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b); // mix, so guest-1, guest-2... spread out
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return ((h ^ (h >>> 16)) >>> 0) % 360;
}

// `X_2`, `X_3`, ... within 20 characters, for a nick someone else holds after a reconnect.
function nickCandidate(base, n) {
  const suffix = '_' + n;
  return base.slice(0, 20 - suffix.length) + suffix;
}

// Reconnect delay: 1 s doubling up to 30 s, each with +-20 % jitter, never over 30 s.
function backoffDelay(attempt, random = Math.random) {
  const base = Math.min(30000, 1000 * 2 ** attempt);
  return Math.round(Math.min(30000, base * (0.8 + 0.4 * random())));
}

if (typeof module === 'object') {
  module.exports = { parseEvent, parseLine, nickHue, nickCandidate, backoffDelay };
}

// ---- The page ------------------------------------------------------------------------
if (typeof document === 'object') document.addEventListener('DOMContentLoaded', startPage);

function startPage() {
  const $ = (id) => document.getElementById(id);
  const ui = {
    messages: $('messages'), input: $('input'), composer: $('composer'), status: $('status'),
    reconnect: $('reconnect'), nick: $('nick'), room: $('room'), sideRoom: $('side-room'),
    people: $('people'), peopleCount: $('people-count'), toggle: $('people-toggle'),
    side: $('side'), jump: $('jump'),
  };
  const params = new URLSearchParams(location.search);
  const projector = params.get('view') === 'projector';
  const startRoom = params.get('room');
  const BASE_TITLE = 'tcpchat';
  const MAX_LINES = 1000; // a projector left on all day must not grow without bound
  const COUNTED = new Set(['message', 'private', 'action', 'wall']); // for the tab title

  const state = {
    ws: null, open: false, partial: '',
    nick: '', room: 'lobby', people: new Map(), // lower-case nick -> nick
    stopped: false, // the user quit, or the server closed with a `closing` event: wait for the button
    attempt: 0, retryTimer: 0,
    wantedNick: '', // chosen with /nick, asked for again after a reconnect
    wantedRoom: startRoom && re('NAME').test(startRoom) ? startRoom : 'lobby',
    restoring: null, // {base, n, candidate} while getting the wanted nick back
    whoQueue: [], // 'auto' or 'user' for each /who sent, answered in order (to hide 'auto' answers)
    whoTimer: 0,
    sent: [], recall: 0, draft: '',
    unread: 0,
    batch: null, // notes made while a frame is read, shown after its line
    stuck: true, // the list is scrolled to its end, so it follows new lines
  };

  // -- Rendering: text only, nicks coloured by a CSS custom property set through CSSOM.
  function nickSpan(nick) {
    const span = document.createElement('span');
    span.className = 'nick';
    span.textContent = nick;
    span.style.setProperty('--hue', String(nickHue(nick)));
    return span;
  }

  function span(cls, text) {
    const s = document.createElement('span');
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function bodyNodes(p) {
    const t = (s) => document.createTextNode(s);
    switch (p.kind) {
      case 'history': return [span('meta', p.head), ...bodyNodes(p.inner)];
      case 'message': return [t('['), nickSpan(p.nick), t('] ' + p.text)];
      case 'private': return [t(p.head), nickSpan(p.nick), t(p.tail + p.text)];
      case 'action': return [t('* '), nickSpan(p.nick), t(' ' + p.text)];
      case 'wall': return [t('* notice from '), nickSpan(p.nick), t(': ' + p.text)];
      default: return [t(p.body)];
    }
  }

  function lineElement(p, extra) {
    const div = document.createElement('div');
    const kind = p.kind === 'history' ? 'history kind-' + p.inner.kind : 'kind-' + p.kind;
    div.className = 'line ' + kind + (extra ? ' ' + extra : '');
    if (p.prefix) div.appendChild(span('meta', p.prefix));
    for (const node of bodyNodes(p)) div.appendChild(node);
    const said = p.kind === 'history' ? p.inner : p;
    if (state.nick && said.text && said.nick !== state.nick && mentions(said.text)) div.classList.add('mention');
    return div;
  }

  function mentions(text) {
    return new RegExp('(^|[^A-Za-z0-9_-])' + state.nick + '($|[^A-Za-z0-9_-])', 'i').test(text);
  }

  // Lines the page says itself (not from the server): class `note`, not `line`.
  function note(text, cls) {
    const div = document.createElement('div');
    div.className = 'note' + (cls ? ' ' + cls : '');
    div.textContent = text;
    if (state.batch) state.batch.push(div); // after the server line that caused it
    else append([div]);
  }

  // -- Scrolling: follow new lines only when the reader is already at the bottom.
  function atBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }

  function append(nodes) {
    if (!nodes.length) return;
    const follow = projector || state.stuck;
    for (const node of nodes) ui.messages.appendChild(node);
    while (ui.messages.childElementCount > MAX_LINES) ui.messages.firstElementChild.remove();
    if (follow) scrollToEnd();
    else ui.jump.hidden = false;
  }

  function scrollToEnd() {
    ui.messages.scrollTop = ui.messages.scrollHeight;
    ui.jump.hidden = true;
  }

  // -- Header, people list and status: kept current from what the server says.
  function setNick(nick) {
    state.nick = nick;
    ui.nick.textContent = nick;
    ui.nick.style.setProperty('--hue', String(nickHue(nick)));
    renderPeople();
  }

  function setRoom(room) {
    state.room = room;
    ui.room.textContent = room;
    ui.sideRoom.textContent = room;
  }

  function setPeople(names) {
    state.people = new Map(names.map((n) => [n.toLowerCase(), n]));
    renderPeople();
  }

  function renderPeople() {
    const names = [...state.people.values()].sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
    ui.people.replaceChildren(...names.map(personItem));
    ui.peopleCount.textContent = String(names.length);
  }

  // One <li> per nick; a button that starts a /msg, except on the read-only projector.
  function personItem(name) {
    const li = document.createElement('li');
    if (name.toLowerCase() === state.nick.toLowerCase()) li.className = 'me';
    const label = nickSpan(name);
    if (projector) {
      li.appendChild(label);
      return li;
    }
    const button = document.createElement('button');
    button.type = 'button';
    button.title = 'send a private message to ' + name;
    button.appendChild(label);
    button.addEventListener('click', () => startPrivate(name));
    li.appendChild(button);
    return li;
  }

  function setStatus(stateName, text) {
    ui.status.dataset.state = stateName;
    ui.status.title = '';
    ui.status.textContent = text;
    document.body.dataset.connection = stateName;
    ui.reconnect.hidden = stateName !== 'disconnected';
    ui.reconnect.textContent = state.stopped ? 'reconnect' : 'reconnect now';
  }

  // -- What the server says about the page itself: event lines, the only source of its
  // nick, room, people and whether to come back after a close.
  function applyEvent(event) {
    for (const [key, value] of Object.entries(event)) {
      if (value === null || value === undefined) continue;
      switch (key) {
        case 'you': onYou(String(value.nick), String(value.room)); break;
        case 'people':
          if (value.room === state.room) setPeople(nameList(value.names));
          break;
        case 'joined':
          for (const n of nameList(value.names)) state.people.set(n.toLowerCase(), n);
          renderPeople();
          if (value.more) refreshPeopleSoon(); // a big batch names only a few
          break;
        case 'left':
          for (const n of nameList(value.names)) state.people.delete(n.toLowerCase());
          renderPeople();
          if (value.more) refreshPeopleSoon();
          break;
        case 'renamed':
          state.people.delete(String(value.old).toLowerCase());
          state.people.set(String(value.new).toLowerCase(), String(value.new));
          renderPeople();
          break;
        case 'closing':
          // Being told to go is not a reason to come straight back. An idle browser would
          // otherwise return at once, defeating --idle-timeout; the projector is idle by
          // design and does come back.
          if (!(value === 'idle' && projector)) state.stopped = true;
          break;
        case 'taken': onNickTaken(String(value)); break;
        // The changes just told cannot be applied one by one (a big room's gathered joins
        // and leaves crossed a rename, or someone left and came back): ask for the list.
        case 'stale': refreshPeopleSoon(); break;
        default: break; // from a newer server: not for this page
      }
    }
  }

  function nameList(names) {
    return Array.isArray(names) ? names.filter((n) => typeof n === 'string') : [];
  }

  // The first `you` of a connection follows the welcome; later ones follow a /nick or a
  // /join of this page's own.
  function onYou(nick, room) {
    if (!state.open) return onWelcome(nick, room);
    if (nick !== state.nick) onNickChanged(nick);
    if (room !== state.room) {
      setRoom(room);
      state.wantedRoom = room;
      setPeople([]); // its `people` event follows
    }
  }

  function onWelcome(nick, room) {
    state.open = true;
    state.attempt = 0;
    setNick(nick);
    setRoom(room);
    setStatus('connected', 'connected');
    setPeople([]); // its `people` event follows
    ui.side.classList.remove('stale');
    state.whoQueue = [];
    state.restoring = null;
    const lines = [];
    if (state.wantedNick && state.wantedNick.toLowerCase() !== nick.toLowerCase()) {
      state.restoring = { base: state.wantedNick, n: 1, candidate: state.wantedNick };
      lines.push('/nick ' + state.wantedNick);
    }
    if (state.wantedRoom.toLowerCase() !== room.toLowerCase()) lines.push('/join ' + state.wantedRoom);
    if (lines.length) sendLines(lines);
  }

  function onNickChanged(nick) {
    const r = state.restoring;
    if (r && nick.toLowerCase() === r.candidate.toLowerCase()) {
      if (r.n > 1) note(`${r.base} was still taken, so you are now ${nick}; /nick ${r.base} tries again`, 'warn');
      state.restoring = null;
    } else {
      state.wantedNick = nick;
    }
    state.people.delete(state.nick.toLowerCase());
    state.people.set(nick.toLowerCase(), nick);
    setNick(nick);
  }

  function onNickTaken(nick) {
    const r = state.restoring;
    if (!r || nick.toLowerCase() !== r.candidate.toLowerCase()) return;
    r.n += 1;
    if (r.n > 50) {
      note(`could not get ${r.base} or a variant back; you are ${state.nick}`, 'warn');
      state.restoring = null;
      return;
    }
    r.candidate = nickCandidate(r.base, r.n);
    note(`${nick} is taken (your old connection may not have timed out yet); trying ${r.candidate}`, 'warn');
    sendLines(['/nick ' + r.candidate]);
  }

  // The text answer to a /who the page sent by itself is not shown; its `people` event,
  // which follows, is what updates the list.
  function isShown(p) {
    return p.kind !== 'who' || state.whoQueue.shift() !== 'auto';
  }

  function refreshPeopleSoon() {
    clearTimeout(state.whoTimer);
    state.whoTimer = setTimeout(() => state.open && sendWho('auto'), 300);
  }

  // -- Incoming frames: whole lines ending in "\n" (a partial tail is kept, to be safe).
  function onFrame(data) {
    const pieces = (state.partial + data).split('\n');
    state.partial = pieces.pop();
    const nodes = [];
    for (const raw of pieces) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      state.batch = [];
      const event = parseEvent(line);
      if (event) {
        applyEvent(event); // never shown
      } else {
        const p = parseLine(line);
        if (isShown(p)) nodes.push(lineElement(p));
        if (COUNTED.has(p.kind)) countUnread();
      }
      nodes.push(...state.batch);
      state.batch = null;
    }
    append(nodes);
  }

  // -- Connection: reconnect with backoff unless the user quit.
  function connect() {
    clearTimeout(state.retryTimer);
    if (state.ws) state.ws.close();
    state.ws = null;
    state.partial = '';
    setStatus('connecting', 'connecting...');
    let ws;
    try {
      ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
    } catch (err) {
      return scheduleRetry();
    }
    state.ws = ws;
    ws.addEventListener('message', (e) => ws === state.ws && typeof e.data === 'string' && onFrame(e.data));
    ws.addEventListener('close', (e) => ws === state.ws && onClose(e.reason));
  }

  function onClose(reason) {
    const wasOpen = state.open;
    state.ws = null;
    state.open = false;
    state.whoQueue = [];
    state.restoring = null;
    if (wasOpen || reason) note(reason ? `disconnected: ${reason}` : 'disconnected', 'warn');
    ui.side.classList.add('stale');
    if (state.stopped) setStatus('disconnected', 'disconnected');
    else scheduleRetry();
  }

  function scheduleRetry() {
    const delay = backoffDelay(state.attempt);
    state.attempt += 1;
    setStatus('disconnected', 'disconnected, reconnecting...');
    ui.status.title = `next try in ${Math.round(delay / 1000)} s`;
    state.retryTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    state.stopped = false;
    state.attempt = 0;
    connect();
  }

  function sendLines(lines) {
    state.ws.send(lines.map((l) => l + '\n').join(''));
  }

  function sendWho(who) {
    state.whoQueue.push(who);
    sendLines(['/who']);
  }

  // -- Typing: Enter sends; own messages are shown here since the server sends no copy.
  function submit(text) {
    if (!text.trim()) return;
    const command = text.startsWith('//') ? null : text.match(/^\/(\S*)\s*(.*)$/);
    const name = command ? command[1].toLowerCase() : null; // '' for a lone "/"
    if (name === 'quit' && !state.open) {
      state.stopped = true;
      clearTimeout(state.retryTimer);
      setStatus('disconnected', 'disconnected');
      ui.input.value = '';
      return;
    }
    if (!state.open) {
      note('not connected: your line is still in the box', 'warn');
      return;
    }
    if (name !== 'op') remember(text);
    ui.input.value = '';
    if (name === 'who') state.whoQueue.push('user');
    if (name === 'quit') state.stopped = true;
    sendLines([text]);
    showOwn(text, name, command ? command[2].trim() : '');
  }

  // In the shape the others get it (`[ann] * waves` for /me), so it is shown as theirs is.
  function showOwn(text, name, rest) {
    if (name === null) {
      const said = text.trimEnd().replace(/^\/\//, '/'); // what the others see
      append([lineElement(parseLine(`[${state.nick}] ${said}`), 'mine')]);
    } else if (name === 'me' && rest) {
      append([lineElement(parseLine(`[${state.nick}] * ${rest}`), 'mine')]);
    } else if (name === 'op') {
      note('> /op ********', 'echo');
    } else if (name !== 'msg') { // the server echoes private messages itself
      note('> ' + text.trim(), 'echo');
    }
  }

  function remember(text) {
    if (state.sent[state.sent.length - 1] !== text) state.sent.push(text);
    if (state.sent.length > 200) state.sent.shift();
    state.recall = state.sent.length;
    state.draft = '';
  }

  // Up and Down walk through what was sent, like a shell; below the newest is the draft.
  function recall(step) {
    const next = state.recall + step;
    if (next < 0 || next > state.sent.length) return;
    if (state.recall === state.sent.length) state.draft = ui.input.value;
    state.recall = next;
    ui.input.value = next === state.sent.length ? state.draft : state.sent[next];
    const end = ui.input.value.length;
    requestAnimationFrame(() => ui.input.setSelectionRange(end, end));
  }

  function startPrivate(name) {
    ui.input.value = `/msg ${name} `;
    ui.input.focus();
    showPanel(false);
  }

  // The people panel, a pop-over on narrow screens (always shown on wide ones).
  function showPanel(open) {
    ui.side.classList.toggle('open', open);
    ui.toggle.setAttribute('aria-expanded', String(open));
  }

  // -- Unread count in the title while the tab is hidden.
  function countUnread() {
    if (!document.hidden) return;
    state.unread += 1;
    document.title = `(${state.unread}) ${BASE_TITLE}`;
  }

  function onVisibility() {
    if (document.hidden) return;
    state.unread = 0;
    document.title = BASE_TITLE;
  }

  // -- Wiring.
  function wire() {
    ui.reconnect.addEventListener('click', () => { reconnectNow(); ui.input.focus(); });
    ui.jump.addEventListener('click', scrollToEnd);
    // Only scrolling up lets go of the end: a list that just got shorter (a banner came)
    // is not scrolled, and the user did not ask to stop following.
    let lastTop = 0;
    ui.messages.addEventListener('scroll', () => {
      if (atBottom()) state.stuck = true;
      else if (ui.messages.scrollTop < lastTop) state.stuck = false;
      lastTop = ui.messages.scrollTop;
      if (state.stuck) ui.jump.hidden = true;
    });
    // A banner or the phone keyboard shrinks the list: keep its last line in view.
    new ResizeObserver(() => (projector || state.stuck) && scrollToEnd()).observe(ui.messages);
    document.addEventListener('visibilitychange', onVisibility);
    window.addEventListener('online', () => !state.ws && !state.stopped && reconnectNow());
    ui.toggle.addEventListener('click', () => showPanel(!ui.side.classList.contains('open')));
    ui.side.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { showPanel(false); ui.toggle.focus(); }
    });
    if (projector) {
      document.body.classList.add('projector');
      ui.composer.remove(); // read only
      return;
    }
    ui.composer.addEventListener('submit', (e) => {
      e.preventDefault();
      submit(ui.input.value);
      ui.input.focus();
    });
    ui.input.addEventListener('keydown', (e) => {
      if (e.isComposing) return;
      if (e.key === 'ArrowUp') { e.preventDefault(); recall(-1); }
      if (e.key === 'ArrowDown') { e.preventDefault(); recall(1); }
    });
    // Keep the focus in the box: clicks on the log (without selecting text, with a mouse)
    // and printable keys typed elsewhere go back to it.
    ui.messages.addEventListener('click', () => {
      showPanel(false);
      if (matchMedia('(pointer: fine)').matches && !String(getSelection())) ui.input.focus();
    });
    document.addEventListener('keydown', (e) => {
      const t = e.target;
      if (e.key.length !== 1 || e.ctrlKey || e.metaKey || e.altKey) return;
      if (t === ui.input || t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement) return;
      if (t instanceof HTMLButtonElement && e.key === ' ') return; // space presses buttons
      ui.input.focus();
    });
    ui.input.focus();
  }

  wire();
  connect();
}
