/**
 * The synthesizer of the templates `npm run dist` ships: deployable from the CloudFormation
 * console with no CDK bootstrap. Every file asset is read from the bucket the person deploying
 * names, laid out as the original solution's build-s3-dist laid it:
 * `s3://<AssetsBucket>-<region>/<AssetsKeyPrefix><asset hash>.<zip|cjs>`. The synthesizer
 * remembers the assets, so the dist script can write them under those names.
 */
import {
  Aws,
  CfnParameter,
  FileAssetPackaging,
  Fn,
  StackSynthesizer,
  type DockerImageAssetLocation,
  type DockerImageAssetSource,
  type FileAssetLocation,
  type FileAssetSource,
  type ISynthesisSession,
} from 'aws-cdk-lib';
import path from 'node:path';

export interface DistSynthesizerProps {
  /**
   * The default of the `AssetsBucket` parameter: the assets bucket's name before `-<region>`.
   * @default none: the person deploying names it
   */
  readonly bucket?: string;
  /** The default of the `AssetsKeyPrefix` parameter. @default 'efs-backup/latest/' */
  readonly keyPrefix?: string;
}

/** An asset as the dist script writes it: `fileName` in the regional assets folder. */
export interface DistAsset {
  readonly fileName: string;
  /** A file, or a directory zipped into `fileName`. */
  readonly sourcePath: string;
  readonly packaging: 'file' | 'zip';
}

export class DistSynthesizer extends StackSynthesizer {
  readonly assets: DistAsset[] = [];
  private bucketParam?: CfnParameter;
  private prefixParam?: CfnParameter;

  constructor(private readonly props: DistSynthesizerProps = {}) {
    super();
  }

  private parameters(): { bucket: string; prefix: string } {
    const stack = this.boundStack;
    this.bucketParam ??= new CfnParameter(stack, 'AssetsBucket', {
      type: 'String',
      description:
        'The S3 bucket holding this solution\'s code, without its "-<region>" suffix: the bucket read is <AssetsBucket>-<region> (as `npm run dist` lays it out).',
      // With "-<region>" after it, a name of one character makes a valid bucket name too.
      allowedPattern: '^[a-z0-9]([a-z0-9.-]{0,40}[a-z0-9])?$',
      ...(this.props.bucket ? { default: this.props.bucket } : {}),
    });
    this.prefixParam ??= new CfnParameter(stack, 'AssetsKeyPrefix', {
      type: 'String',
      description: 'The key prefix of the code in that bucket, ending with "/".',
      allowedPattern: "^([A-Za-z0-9!_.*'()-]+/)*$",
      default: this.props.keyPrefix ?? 'efs-backup/latest/',
    });
    return { bucket: this.bucketParam.valueAsString, prefix: this.prefixParam.valueAsString };
  }

  addFileAsset(asset: FileAssetSource): FileAssetLocation {
    if (!asset.fileName) throw new Error('the dist templates take file assets from files only');
    const zip = asset.packaging === FileAssetPackaging.ZIP_DIRECTORY;
    const fileName = `${asset.sourceHash}${zip ? '.zip' : path.extname(asset.fileName)}`;
    if (!this.assets.some((a) => a.fileName === fileName)) {
      this.assets.push({ fileName, sourcePath: asset.fileName, packaging: zip ? 'zip' : 'file' });
    }
    const p = this.parameters();
    const bucketName = Fn.join('-', [p.bucket, Aws.REGION]);
    const objectKey = Fn.join('', [p.prefix, fileName]);
    return {
      bucketName,
      objectKey,
      httpUrl: Fn.join('', [
        'https://',
        bucketName,
        '.s3.',
        Aws.REGION,
        '.',
        Aws.URL_SUFFIX,
        '/',
        objectKey,
      ]),
      s3ObjectUrl: Fn.join('', ['s3://', bucketName, '/', objectKey]),
    };
  }

  addDockerImageAsset(_asset: DockerImageAssetSource): DockerImageAssetLocation {
    throw new Error('the dist templates have no container images');
  }

  synthesize(session: ISynthesisSession): void {
    // The template only: no asset manifest, no bootstrap version rule.
    this.synthesizeTemplate(session);
    this.emitArtifact(session);
  }
}
