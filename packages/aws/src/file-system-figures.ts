/**
 * What the worker records about the file systems of a run: their metered sizes and the source's
 * throughput mode (EFS DescribeFileSystems), and, in Bursting mode, the source's burst credit
 * balance (CloudWatch GetMetricData). A figure that cannot be read is left out and logged: it
 * never stops a run.
 */
import { GetMetricDataCommand, type CloudWatchClient } from '@aws-sdk/client-cloudwatch';
import { DescribeFileSystemsCommand, type EFSClient } from '@aws-sdk/client-efs';
import type { ServiceLog } from '@efs-backup/service';
import { errorText } from './json-log.js';
import type { RunAttributes } from './run-item.js';

export interface FileSystemFacts {
  /** Metered size in bytes (EFS updates it within hours, not at once). */
  size: number;
  inIA: number;
  inArchive: number;
  throughputMode: string | null;
}

export async function describeFileSystem(efs: EFSClient, id: string): Promise<FileSystemFacts> {
  const r = await efs.send(new DescribeFileSystemsCommand({ FileSystemId: id }));
  const f = r.FileSystems?.[0];
  if (!f) throw new Error(`EFS does not know the file system ${id}`);
  return {
    size: f.SizeInBytes?.Value ?? 0,
    inIA: f.SizeInBytes?.ValueInIA ?? 0,
    inArchive: f.SizeInBytes?.ValueInArchive ?? 0,
    throughputMode: f.ThroughputMode ?? null,
  };
}

/**
 * A file system's newest `BurstCreditBalance` (bytes) of the 15 minutes before `at`, or null
 * when CloudWatch has none (a file system not in Bursting mode has none).
 */
export async function burstCreditBalance(
  cloudwatch: CloudWatchClient,
  fileSystemId: string,
  at: Date = new Date(),
): Promise<number | null> {
  const r = await cloudwatch.send(
    new GetMetricDataCommand({
      MetricDataQueries: [
        {
          Id: 'credits',
          MetricStat: {
            Metric: {
              Namespace: 'AWS/EFS',
              MetricName: 'BurstCreditBalance',
              Dimensions: [{ Name: 'FileSystemId', Value: fileSystemId }],
            },
            Period: 60,
            Stat: 'Minimum',
          },
          ReturnData: true,
        },
      ],
      StartTime: new Date(at.getTime() - 15 * 60_000),
      EndTime: at,
      ScanBy: 'TimestampDescending',
    }),
  );
  const v = r.MetricDataResults?.[0]?.Values?.[0];
  return typeof v === 'number' ? v : null;
}

export interface FiguresContext {
  efs: EFSClient;
  cloudwatch: CloudWatchClient;
  sourceFileSystemId: string;
  backupFileSystemId: string;
  log: ServiceLog;
}

/** The run's figures at its start: both sizes, the source's mode and, if bursting, its credits. */
export async function startFigures(c: FiguresContext): Promise<Partial<RunAttributes>> {
  const out: Partial<RunAttributes> = {};
  const source = await attempt(c.log, 'the source file system', () =>
    describeFileSystem(c.efs, c.sourceFileSystemId),
  );
  if (source) {
    out.SourceFileSystemSize = source.size;
    if (source.throughputMode) out.SourceThroughputMode = source.throughputMode;
  }
  const backup = await attempt(c.log, 'the backup file system', () =>
    describeFileSystem(c.efs, c.backupFileSystemId),
  );
  if (backup) {
    out.DestinationFileSystemSize = backup.size;
    out.DestinationFileSystemSizeInIA = backup.inIA;
    out.DestinationFileSystemSizeInArchive = backup.inArchive;
  }
  if (out.SourceThroughputMode === 'bursting') {
    const credits = await attempt(c.log, "the source's burst credits", () =>
      burstCreditBalance(c.cloudwatch, c.sourceFileSystemId),
    );
    if (credits !== null && credits !== undefined) out.SourceBurstCreditBalanceAtStart = credits;
  }
  return out;
}

/** The source's burst credits at the run's end, in Bursting mode only. */
export async function endFigures(
  c: FiguresContext,
  throughputMode: string | undefined,
): Promise<Partial<RunAttributes>> {
  if (throughputMode !== 'bursting') return {};
  const credits = await attempt(c.log, "the source's burst credits", () =>
    burstCreditBalance(c.cloudwatch, c.sourceFileSystemId),
  );
  return credits !== null && credits !== undefined
    ? { SourceBurstCreditBalanceAtEnd: credits }
    : {};
}

async function attempt<T>(log: ServiceLog, what: string, f: () => Promise<T>): Promise<T | null> {
  try {
    return await f();
  } catch (e) {
    log.warn({ err: errorText(e) }, `cannot read ${what}: the run's record goes without it`);
    return null;
  }
}
