/** The bundled worker's entry: runs main() and exits with its code once output is flushed. */
import { main } from './worker-main.js';

void main(process.argv).then((code) => {
  process.stdout.write('', () => process.exit(code));
});
