/** Quotes one argument for virsh's own command parser (batch scripts, the session's commands). */
export function quoteVirshArg(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}
