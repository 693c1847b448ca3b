// A small YAML emitter for showing a version's document (the API serves it as JSON). Block style,
// two-space indent, keys in the document's order; a string is quoted (as JSON, which YAML reads)
// whenever plain YAML could read it as something else.
const PLAIN_UNSAFE = /^$|^\s|\s$|^[-?:,[\]{}#&*!|>'"%@`]|: |\s#|[\n\r\t\u0000-\u001f\u007f-\u009f]|:$/;
const LOOKS_TYPED = /^(~|null|true|false|yes|no|on|off|y|n|[-+]?(\.inf|\.nan)|[-+]?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|[-+]?\.[0-9]+([eE][-+]?[0-9]+)?|0[xob][0-9a-fA-F_]+)$/i;

function str(s) {
  return PLAIN_UNSAFE.test(s) || LOOKS_TYPED.test(s) ? JSON.stringify(s) : s;
}

function scalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'string') return str(v);
  if (Array.isArray(v)) return '[]';
  if (typeof v === 'object') return '{}';
  return String(v);
}

function nested(v) {
  return v !== null && typeof v === 'object' && Object.keys(v).length > 0;
}

function block(v, depth, lines) {
  const pad = '  '.repeat(depth);
  if (Array.isArray(v)) {
    for (const item of v) {
      if (nested(item)) {
        const sub = [];
        block(item, depth + 1, sub);
        sub[0] = pad + '- ' + sub[0].slice(pad.length + 2);
        lines.push(...sub);
      } else {
        lines.push(pad + '- ' + scalar(item));
      }
    }
    return;
  }
  for (const [k, val] of Object.entries(v)) {
    if (nested(val)) {
      lines.push(pad + str(k) + ':');
      block(val, depth + 1, lines);
    } else {
      lines.push(pad + str(k) + ': ' + scalar(val));
    }
  }
}

export function toYaml(v) {
  if (!nested(v)) return scalar(v) + '\n';
  const lines = [];
  block(v, 0, lines);
  return lines.join('\n') + '\n';
}
